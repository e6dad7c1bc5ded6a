// Package settler is the settlement worker: it takes reserved claims from
// the store's settlement feed, asks the downstream order service to create
// each order, and settles the claim on success, retries transient failures
// with backoff ("async redo"), and releases it on a permanent failure
// (rollback: the stock goes back on sale). DESIGN.md says why it is built
// this way.
package settler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Defaults for a zero Config.
const (
	DefaultGroup        = "settlers"
	DefaultConcurrency  = 8
	DefaultLease        = 30 * time.Second
	DefaultOrderTimeout = 5 * time.Second
	DefaultPollInterval = 250 * time.Millisecond
	backoffMin          = 50 * time.Millisecond
	backoffMax          = 2 * time.Second
	concurrencyMax      = 1000 // one lease takes at most this many claims
	// leaseMargin is the share of a lease kept free at its end: a claim
	// whose lease is this close to its end is dropped (another lease picks
	// it up), so that no two workers ever call about it at once.
	leaseMargin = 5
)

// Store is what the worker needs of the store cluster; *client.Store has it.
type Store interface {
	LeaseClaims(context.Context, *pb.LeaseClaimsRequest) (*pb.LeaseClaimsResponse, error)
	Settle(context.Context, *pb.SettleRequest) (*pb.SettleResponse, error)
	Release(context.Context, *pb.ReleaseRequest) (*pb.ReleaseResponse, error)
}

// Config configures a worker.
type Config struct {
	Group        string        // workers sharing one cursor; "" : DefaultGroup
	Worker       string        // this worker's ID, unique in the group (required)
	OrderURL     string        // the order service's endpoint, POSTed one order at a time (required)
	Concurrency  int           // claims handled at once; 0: DefaultConcurrency
	Lease        time.Duration // how long a leased claim is this worker's; 0: DefaultLease
	OrderTimeout time.Duration // one order call; 0: DefaultOrderTimeout; at most a fifth of Lease
	PollInterval time.Duration // wait when the feed is empty; 0: DefaultPollInterval
	HTTPClient   *http.Client  // nil: a client without its own timeout
	Logger       *slog.Logger  // nil: discard
}

func (c Config) withDefaults() (Config, error) {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.OrderTimeout == 0 {
		c.OrderTimeout = min(DefaultOrderTimeout, c.Lease/leaseMargin)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Worker == "":
		return c, errors.New("settler: a worker ID is required")
	case c.OrderURL == "":
		return c, errors.New("settler: an order URL is required")
	case c.Concurrency < 0 || c.Concurrency > concurrencyMax:
		return c, fmt.Errorf("settler: concurrency %d: want 1 to %d", c.Concurrency, concurrencyMax)
	case c.Lease < time.Second || c.Lease > time.Hour:
		return c, fmt.Errorf("settler: lease %v: want 1s to 1h", c.Lease)
	case c.OrderTimeout <= 0 || c.OrderTimeout > c.Lease/leaseMargin:
		return c, fmt.Errorf("settler: order timeout %v: want more than 0 and at most a fifth of the lease (%v)", c.OrderTimeout, c.Lease/leaseMargin)
	case c.PollInterval < 0:
		return c, fmt.Errorf("settler: poll interval %v is negative", c.PollInterval)
	}
	return c, nil
}

// Stats counts what a worker did.
type Stats struct {
	Settled   int64 // the order service accepted; the claim is settled
	Released  int64 // the order service refused for good; the claim is released
	Retries   int64 // transient failures retried (order service or store)
	Dropped   int64 // claims left to the feed because their lease was ending
	Conflicts int64 // the order was accepted but the claim had been released (or the reverse)
}

// Worker is one settlement worker.
type Worker struct {
	cfg   Config
	store Store
	stats struct{ settled, released, retries, dropped, conflicts atomic.Int64 }
}

// New returns a worker; Run starts it.
func New(store Store, cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, store: store}, nil
}

// Stats returns the worker's counters so far.
func (w *Worker) Stats() Stats {
	return Stats{
		Settled: w.stats.settled.Load(), Released: w.stats.released.Load(), Retries: w.stats.retries.Load(),
		Dropped: w.stats.dropped.Load(), Conflicts: w.stats.conflicts.Load(),
	}
}

// Run leases claims and handles them until ctx ends, then waits for the
// claims in hand to stop (their calls are cancelled; their leases end and
// the feed hands them out again).
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, w.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	var mu sync.Mutex
	inHand := make(map[uint64]bool) // a lease may hand back a claim this worker still holds
	backoff := backoffMin
	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		if free == 0 {
			select {
			case <-ctx.Done():
			case <-freed:
			}
			continue
		}
		resp, err := w.store.LeaseClaims(ctx, &pb.LeaseClaimsRequest{
			Group: w.cfg.Group, Worker: w.cfg.Worker, Max: uint32(free), Lease: durationpb.New(w.cfg.Lease),
		})
		// The lease runs from the leader's clock at apply; counting it from
		// before the call keeps the local deadline on the safe side.
		until := time.Now().Add(w.cfg.Lease - w.cfg.Lease/leaseMargin)
		if err != nil {
			if ctx.Err() == nil {
				w.cfg.Logger.Warn("lease claims", "err", err)
				w.stats.retries.Add(1)
			}
			sleep(ctx, jitter(backoff))
			backoff = min(2*backoff, backoffMax)
			continue
		}
		backoff = backoffMin
		started := 0
		for _, c := range resp.GetClaims() {
			mu.Lock()
			busy := inHand[c.GetId()]
			inHand[c.GetId()] = true
			mu.Unlock()
			if busy {
				continue
			}
			slots <- struct{}{}
			started++
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.handle(ctx, c, until)
				mu.Lock()
				delete(inHand, c.GetId())
				mu.Unlock()
				<-slots
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
		}
		if started == 0 {
			sleep(ctx, w.cfg.PollInterval)
		}
	}
	return nil
}

// order is the JSON body posted to the order service.
type order struct {
	ClaimID    uint64 `json:"claim_id"`
	CampaignID string `json:"campaign_id"`
	ItemID     string `json:"item_id"`
	UserID     string `json:"user_id"`
	Quantity   uint32 `json:"quantity"`
}

// verdict is what the order service said.
type verdict int

const (
	transient verdict = iota // retry
	accepted                 // settle
	refused                  // release
)

// handle takes one claim to settled or released, or leaves it to the feed
// when its lease is ending.
func (w *Worker) handle(ctx context.Context, c *pb.Claim, until time.Time) {
	log := w.cfg.Logger.With("claim", c.GetId())
	backoff := backoffMin
	for ctx.Err() == nil {
		if time.Until(until) < w.cfg.OrderTimeout {
			w.stats.dropped.Add(1)
			log.Debug("lease ending: claim left to the feed")
			return
		}
		v, detail := w.callOrder(ctx, c)
		if v != transient && w.finish(ctx, c, v, until, log) {
			return
		}
		if v == transient {
			log.Debug("order service failed; retrying", "detail", detail)
		}
		w.stats.retries.Add(1)
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, backoffMax)
	}
}

// callOrder posts the order with the claim ID as its idempotency key, so
// that a retry (by this worker or the next) creates it at most once.
func (w *Worker) callOrder(ctx context.Context, c *pb.Claim) (verdict, string) {
	body, err := json.Marshal(order{
		ClaimID: c.GetId(), CampaignID: c.GetCampaignId(), ItemID: c.GetItemId(), UserID: c.GetUserId(), Quantity: c.GetQuantity(),
	})
	if err != nil {
		return transient, err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.OrderTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.OrderURL, bytes.NewReader(body))
	if err != nil {
		return transient, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", strconv.FormatUint(c.GetId(), 10))
	resp, err := w.cfg.HTTPClient.Do(req)
	if err != nil {
		return transient, err.Error() // timeouts and connection errors
	}
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return accepted, resp.Status
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return transient, resp.Status
	case code >= 400 && code < 500:
		return refused, resp.Status
	}
	return transient, resp.Status
}

// finish settles (accepted) or releases (refused) the claim. It reports
// false when the store could not be reached: the caller retries, and the
// order service answers the same for the same key.
func (w *Worker) finish(ctx context.Context, c *pb.Claim, v verdict, until time.Time, log *slog.Logger) bool {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	id := strconv.FormatUint(c.GetId(), 10)
	var err error
	if v == accepted {
		_, err = w.store.Settle(ctx, &pb.SettleRequest{ClaimId: c.GetId(), RequestId: "settle-" + id})
	} else {
		_, err = w.store.Release(ctx, &pb.ReleaseRequest{ClaimId: c.GetId(), RequestId: "release-" + id})
	}
	switch {
	case err == nil && v == accepted:
		w.stats.settled.Add(1)
	case err == nil:
		w.stats.released.Add(1)
	case errors.Is(err, client.ErrAlreadyReleased), errors.Is(err, client.ErrAlreadySettled):
		// The reservation expired before the order was accepted (or was
		// settled elsewhere before a refusal): the order service needs a
		// compensating cancel, which is not this worker's to make.
		w.stats.conflicts.Add(1)
		log.Warn("order outcome conflicts with the claim", "err", err)
	case errors.Is(err, client.ErrFailedPrecondition), errors.Is(err, client.ErrNotFound), errors.Is(err, client.ErrInvalidArgument):
		log.Error("settle or release refused", "err", err)
	default:
		log.Warn("settle or release failed; retrying", "err", err)
		return false
	}
	return true
}

func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
