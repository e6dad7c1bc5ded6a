// Package settler is the settlement worker: it takes reserved claims from
// the store's settlement feed, asks the downstream order service to create
// each order, and settles the claim on success, retries transient failures
// with backoff ("async redo"), and releases it on a permanent failure
// (rollback: the stock goes back on sale). When the order was accepted but
// the reservation had already expired, it cancels the order (compensation).
// DESIGN.md says why it is built this way.
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
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// finishWindow bounds the work after the order service's verdict: the
	// settle or release in the store and, when the reservation had
	// expired, the cancel of the order, each retried with backoff.
	finishWindow = 10 * time.Minute
	// shutdownGrace is how long that work goes on after Run's context
	// ends, so that a worker told to stop still cancels the orders it owes.
	shutdownGrace = 10 * time.Second
)

// Store is what the worker needs of the store cluster; *client.Store has it.
type Store interface {
	LeaseClaims(context.Context, *pb.LeaseClaimsRequest) (*pb.LeaseClaimsResponse, error)
	Settle(context.Context, *pb.SettleRequest) (*pb.SettleResponse, error)
	Release(context.Context, *pb.ReleaseRequest) (*pb.ReleaseResponse, error)
}

// Config configures a worker.
type Config struct {
	Group        string                // workers sharing one cursor; "" : DefaultGroup
	Worker       string                // this worker's ID, unique in the group (required)
	OrderURL     string                // the order service's endpoint, POSTed one order at a time (required)
	CancelURL    string                // where an accepted order is cancelled (POST, same body and key); "": OrderURL + "/cancel"
	Concurrency  int                   // claims handled at once; 0: DefaultConcurrency
	Lease        time.Duration         // how long a leased claim is this worker's; 0: DefaultLease
	OrderTimeout time.Duration         // one order call; 0: DefaultOrderTimeout; at most a fifth of Lease
	PollInterval time.Duration         // wait when the feed is empty; 0: DefaultPollInterval
	HTTPClient   *http.Client          // nil: a client without its own timeout
	Logger       *slog.Logger          // nil: discard
	Metrics      prometheus.Registerer // nil: no metrics registered
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
	if c.CancelURL == "" && c.OrderURL != "" {
		u, err := url.JoinPath(c.OrderURL, "cancel")
		if err != nil {
			return c, fmt.Errorf("settler: order URL: %w", err)
		}
		c.CancelURL = u
	}
	switch {
	case c.Worker == "":
		return c, errors.New("settler: a worker ID is required")
	case c.OrderURL == "":
		return c, errors.New("settler: an order URL is required")
	case !validURL(c.OrderURL) || !validURL(c.CancelURL):
		return c, fmt.Errorf("settler: order URL %q, cancel URL %q: want absolute http(s) URLs", c.OrderURL, c.CancelURL)
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

func validURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Stats counts what a worker did.
type Stats struct {
	Settled   int64 // the order service accepted; the claim is settled
	Released  int64 // the order service refused for good; the claim is released
	Retries   int64 // transient failures retried (order service or store)
	Dropped   int64 // claims left to the feed because their lease was ending
	Conflicts int64 // the order was accepted but the claim had been released (or the reverse)
	// Cancelled: orders cancelled because their claim had been released
	// (the compensation of a conflict); CancelFailed: conflicts whose
	// cancel was refused for good or given up on (logged as errors: an
	// operator must cancel the order).
	Cancelled, CancelFailed int64
}

// Worker is one settlement worker.
type Worker struct {
	cfg   Config
	store Store
	stats struct {
		settled, released, retries, dropped, conflicts, cancelled, cancelFailed atomic.Int64
	}
}

// New returns a worker; Run starts it. With cfg.Metrics set it registers
// flashd_settler_* counters there.
func New(store Store, cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, store: store}
	if cfg.Metrics != nil {
		if err := w.register(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("settler: register metrics: %w", err)
		}
	}
	return w, nil
}

// register exposes the Stats counters to Prometheus.
func (w *Worker) register(reg prometheus.Registerer) error {
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	const claims, cancels = "flashd_settler_claims_total", "flashd_settler_cancels_total"
	const claimsHelp = "Claims the worker finished or left, by outcome."
	const cancelsHelp = "Compensations: orders accepted for a claim the store had released, by outcome."
	for _, c := range []prometheus.Collector{
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "settled"}, &w.stats.settled),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "released"}, &w.stats.released),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "dropped"}, &w.stats.dropped),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "conflict"}, &w.stats.conflicts),
		counter(cancels, cancelsHelp, prometheus.Labels{"outcome": "cancelled"}, &w.stats.cancelled),
		counter(cancels, cancelsHelp, prometheus.Labels{"outcome": "failed"}, &w.stats.cancelFailed),
		counter("flashd_settler_retries_total", "Transient failures retried (order service or store).", nil, &w.stats.retries),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns the worker's counters so far.
func (w *Worker) Stats() Stats {
	return Stats{
		Settled: w.stats.settled.Load(), Released: w.stats.released.Load(), Retries: w.stats.retries.Load(),
		Dropped: w.stats.dropped.Load(), Conflicts: w.stats.conflicts.Load(),
		Cancelled: w.stats.cancelled.Load(), CancelFailed: w.stats.cancelFailed.Load(),
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
// when its lease ends before the order service has decided.
func (w *Worker) handle(ctx context.Context, c *pb.Claim, until time.Time) {
	log := w.cfg.Logger.With("claim", c.GetId())
	v, ok := w.placeOrder(ctx, c, until, log)
	if !ok {
		return
	}
	// The verdict is in: settling or releasing is idempotent in the store,
	// so it need not fit in the lease, and it goes on briefly after a stop
	// so that an order accepted for an expired reservation is still
	// cancelled.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishWindow)
	graceDone := make(chan struct{})
	stopGrace := context.AfterFunc(ctx, func() {
		defer close(graceDone)
		sleep(fctx, shutdownGrace)
		cancel()
	})
	defer func() {
		cancel()
		if !stopGrace() {
			<-graceDone
		}
	}()
	w.finish(fctx, c, v, log)
}

// placeOrder asks the order service until it decides, while the lease
// leaves time for a whole call: no two workers ever call about a claim at
// once. It reports false when the claim is left to the feed.
func (w *Worker) placeOrder(ctx context.Context, c *pb.Claim, until time.Time, log *slog.Logger) (verdict, bool) {
	backoff := backoffMin
	for ctx.Err() == nil {
		if time.Until(until) < w.cfg.OrderTimeout {
			w.stats.dropped.Add(1)
			log.Debug("lease ending: claim left to the feed")
			return transient, false
		}
		v, detail := w.post(ctx, w.cfg.OrderURL, c)
		if v != transient {
			return v, true
		}
		log.Debug("order service failed; retrying", "detail", detail)
		w.stats.retries.Add(1)
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, backoffMax)
	}
	return transient, false
}

// post sends the order to url (the order or the cancel endpoint) with the
// claim ID as its idempotency key, so that a retry (by this worker or the
// next) acts at most once.
func (w *Worker) post(ctx context.Context, url string, c *pb.Claim) (verdict, string) {
	body, err := json.Marshal(order{
		ClaimID: c.GetId(), CampaignID: c.GetCampaignId(), ItemID: c.GetItemId(), UserID: c.GetUserId(), Quantity: c.GetQuantity(),
	})
	if err != nil {
		return transient, err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.OrderTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
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

// finish settles (accepted) or releases (refused) the claim, retrying
// store failures with backoff until ctx ends. A settle refused because the
// reservation had expired cancels the order.
func (w *Worker) finish(ctx context.Context, c *pb.Claim, v verdict, log *slog.Logger) {
	id := strconv.FormatUint(c.GetId(), 10)
	backoff := backoffMin
	for {
		var err error
		if v == accepted {
			_, err = w.store.Settle(ctx, &pb.SettleRequest{ClaimId: c.GetId(), RequestId: "settle-" + id})
		} else {
			_, err = w.store.Release(ctx, &pb.ReleaseRequest{ClaimId: c.GetId(), RequestId: "release-" + id})
		}
		switch {
		case err == nil && v == accepted:
			w.stats.settled.Add(1)
			return
		case err == nil, v == refused && errors.Is(err, client.ErrAlreadyReleased):
			// Refused by the order service; released, by this call or
			// by the reservation's expiry.
			w.stats.released.Add(1)
			return
		case v == accepted && errors.Is(err, client.ErrAlreadyReleased):
			// The reservation expired (or was released by hand) while
			// the order was being placed: its stock may be someone
			// else's now, so the order must go.
			w.stats.conflicts.Add(1)
			log.Warn("order accepted but the reservation was already released; cancelling the order")
			w.cancelOrder(ctx, c, log)
			return
		case errors.Is(err, client.ErrAlreadySettled):
			// Refused by the order service but settled elsewhere (by
			// hand): the order service and the store disagree, and
			// only a person can tell which is right.
			w.stats.conflicts.Add(1)
			log.Error("order refused but the claim is already settled", "err", err)
			return
		case errors.Is(err, client.ErrFailedPrecondition), errors.Is(err, client.ErrNotFound), errors.Is(err, client.ErrInvalidArgument):
			log.Error("settle or release refused", "err", err)
			return
		case ctx.Err() != nil:
			log.Error("settle or release not done before the worker stopped; the feed hands the claim out again", "err", err)
			return
		}
		log.Warn("settle or release failed; retrying", "err", err)
		w.stats.retries.Add(1)
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, backoffMax)
	}
}

// cancelOrder is the compensation: it POSTs the order to the cancel URL
// with the same idempotency key until the order service answers 2xx
// (cancelled, or cancelled before) or refuses for good, retrying transient
// failures with backoff until ctx ends.
func (w *Worker) cancelOrder(ctx context.Context, c *pb.Claim, log *slog.Logger) {
	backoff := backoffMin
	for {
		v, detail := w.post(ctx, w.cfg.CancelURL, c)
		switch {
		case v == accepted:
			w.stats.cancelled.Add(1)
			log.Info("order cancelled", "detail", detail)
			return
		case v == refused:
			w.stats.cancelFailed.Add(1)
			log.Error("order service refused to cancel the order of a released claim: cancel it by hand", "detail", detail)
			return
		case ctx.Err() != nil:
			w.stats.cancelFailed.Add(1)
			log.Error("order of a released claim not cancelled before giving up: cancel it by hand", "detail", detail)
			return
		}
		log.Debug("cancel failed; retrying", "detail", detail)
		w.stats.retries.Add(1)
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, backoffMax)
	}
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
