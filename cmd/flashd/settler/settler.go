// Package settler is the settlement worker: it takes open claims from the
// store's settlement feed, marks each as ordering in the store, asks the
// downstream order service to create its order, and settles the claim on
// success (also past its deadline: a marked claim keeps its stock), retries
// transient failures with backoff ("async redo"), and releases it on a
// permanent failure (rollback: the stock goes back on sale). A marked claim
// whose deadline passed before it was settled is handed out to be
// compensated: the worker marks it as cancelling, cancels the order, and
// releases it. DESIGN.md says why it is built this way.
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
	"slices"
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
	campaignsMax        = 64   // campaigns one worker serves (the store's bound on a lease)
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
	MarkOrdering(context.Context, *pb.MarkOrderingRequest) (*pb.MarkOrderingResponse, error)
	MarkCancelling(context.Context, *pb.MarkCancellingRequest) (*pb.MarkCancellingResponse, error)
	Settle(context.Context, *pb.SettleRequest) (*pb.SettleResponse, error)
	Release(context.Context, *pb.ReleaseRequest) (*pb.ReleaseResponse, error)
}

// Config configures a worker.
type Config struct {
	Group        string                // workers sharing one cursor; "" : DefaultGroup
	Worker       string                // this worker's ID, unique in the group (required)
	Campaigns    []string              // the campaigns whose claims it settles, 1 to 64 (required)
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
	case len(c.Campaigns) == 0 || len(c.Campaigns) > campaignsMax:
		return c, fmt.Errorf("settler: %d campaigns: want 1 to %d, the campaigns whose claims the worker settles", len(c.Campaigns), campaignsMax)
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
	for _, id := range c.Campaigns {
		if err := pb.ValidateID("campaign id", id); err != nil {
			return c, fmt.Errorf("settler: %w", err)
		}
	}
	c.Campaigns = slices.Clone(c.Campaigns)
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
	Conflicts int64 // the order was accepted but the claim had been released or was being cancelled (or the reverse)
	Expired   int64 // the reservation had expired before an order was placed: nothing to do
	// Compensated: claims to compensate (marked as ordering, past their
	// deadline) released after their order was cancelled or found absent.
	Compensated int64
	// Cancelled: orders cancelled (of claims to compensate, or of claims
	// released by hand while their order was placed); NoOrder: cancels
	// answered 404, no such order; CancelFailed: cancels refused for good
	// or given up on (logged as errors: an operator must cancel the
	// order).
	Cancelled, NoOrder, CancelFailed int64
}

// Worker is one settlement worker.
type Worker struct {
	cfg   Config
	store Store
	stats struct {
		settled, released, retries, dropped, conflicts, expired, compensated, cancelled, noOrder, cancelFailed atomic.Int64
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
	const cancelsHelp = "Order cancels (compensations of claims whose reservation expired while ordering), by outcome."
	for _, c := range []prometheus.Collector{
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "settled"}, &w.stats.settled),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "released"}, &w.stats.released),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "dropped"}, &w.stats.dropped),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "conflict"}, &w.stats.conflicts),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "expired"}, &w.stats.expired),
		counter(claims, claimsHelp, prometheus.Labels{"outcome": "compensated"}, &w.stats.compensated),
		counter(cancels, cancelsHelp, prometheus.Labels{"outcome": "cancelled"}, &w.stats.cancelled),
		counter(cancels, cancelsHelp, prometheus.Labels{"outcome": "no_order"}, &w.stats.noOrder),
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
		Dropped: w.stats.dropped.Load(), Conflicts: w.stats.conflicts.Load(), Expired: w.stats.expired.Load(),
		Compensated: w.stats.compensated.Load(), Cancelled: w.stats.cancelled.Load(), NoOrder: w.stats.noOrder.Load(),
		CancelFailed: w.stats.cancelFailed.Load(),
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
	warned := false
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
			Campaigns: w.cfg.Campaigns,
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
			if !slices.Contains(w.cfg.Campaigns, c.GetCampaignId()) {
				// A store that predates the campaign filter leases every
				// campaign's claims: this one is left to its lease's end.
				w.stats.dropped.Add(1)
				if !warned {
					warned = true
					w.cfg.Logger.Warn("the store leased a claim of a campaign this worker does not serve (a store without the campaign filter?); left to the feed",
						"claim", c.GetId(), "campaign", c.GetCampaignId())
				}
				continue
			}
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
	transient  verdict = iota // retry
	accepted                  // settle
	refused                   // release
	compensate                // the claim is to compensate: cancel its order, then release
)

// handle takes one claim to settled or released, or leaves it to the feed
// when its lease ends before the order service has decided. A claim to
// compensate (its reservation expired while its order was placed) has its
// order cancelled and is released.
func (w *Worker) handle(ctx context.Context, c *pb.Claim, until time.Time) {
	log := w.cfg.Logger.With("claim", c.GetId())
	v := compensate
	switch c.GetState() {
	case pb.ClaimState_CLAIM_STATE_TO_COMPENSATE, pb.ClaimState_CLAIM_STATE_CANCELLING:
	default:
		var ok bool
		if v, ok = w.placeOrder(ctx, c, until, log); !ok {
			return
		}
	}
	// The verdict is in: settling, releasing and cancelling are idempotent
	// in the store and at the order service, so they need not fit in the
	// lease, and they go on briefly after a stop so that a stop does not
	// leave a cancel half done (a kill does: the claim stays in the feed,
	// and the next worker cancels again).
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
	if v == compensate {
		w.compensate(fctx, c, log)
		return
	}
	w.finish(fctx, c, v, log)
}

// placeOrder marks the claim as ordering in the store, then asks the order
// service until it decides, while the lease leaves time for a whole call:
// no two workers ever call about a claim at once. It reports false when
// the claim is left to the feed or needs nothing more, and compensate when
// the mark finds the claim to compensate (an earlier worker's order may
// exist; its reservation expired).
func (w *Worker) placeOrder(ctx context.Context, c *pb.Claim, until time.Time, log *slog.Logger) (verdict, bool) {
	backoff := backoffMin
	marked := false
	for ctx.Err() == nil {
		if time.Until(until) < w.cfg.OrderTimeout {
			w.stats.dropped.Add(1)
			log.Debug("lease ending: claim left to the feed")
			return transient, false
		}
		if !marked {
			// Never an order call without the mark: past its deadline an
			// unmarked reservation is released, and its order would be lost.
			_, err := w.store.MarkOrdering(ctx, &pb.MarkOrderingRequest{ClaimId: c.GetId(), RequestId: requestID("order-", c)})
			switch {
			case err == nil:
				marked = true
				continue // the mark took time: look at the lease again
			case errors.Is(err, client.ErrCompensating):
				return compensate, true
			case errors.Is(err, client.ErrAlreadyReleased):
				w.stats.expired.Add(1)
				log.Debug("reservation expired before its order was placed")
				return transient, false
			case errors.Is(err, client.ErrAlreadySettled):
				log.Debug("claim already settled")
				return transient, false
			case isRefusal(err):
				log.Error("mark ordering refused", "err", err)
				return transient, false
			case ctx.Err() == nil:
				log.Warn("mark ordering failed; retrying", "err", err)
				w.stats.retries.Add(1)
				sleep(ctx, jitter(backoff))
				backoff = min(2*backoff, backoffMax)
			}
			continue
		}
		v, _, detail := w.post(ctx, w.cfg.OrderURL, c)
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
func (w *Worker) post(ctx context.Context, url string, c *pb.Claim) (v verdict, code int, detail string) {
	body, err := json.Marshal(order{
		ClaimID: c.GetId(), CampaignID: c.GetCampaignId(), ItemID: c.GetItemId(), UserID: c.GetUserId(), Quantity: c.GetQuantity(),
	})
	if err != nil {
		return transient, 0, err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.OrderTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return transient, 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", strconv.FormatUint(c.GetId(), 10))
	resp, err := w.cfg.HTTPClient.Do(req)
	if err != nil {
		return transient, 0, err.Error() // timeouts and connection errors
	}
	resp.Body.Close()
	switch code = resp.StatusCode; {
	case code >= 200 && code < 300:
		return accepted, code, resp.Status
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return transient, code, resp.Status
	case code >= 400 && code < 500:
		return refused, code, resp.Status
	}
	return transient, code, resp.Status
}

func requestID(prefix string, c *pb.Claim) string { return prefix + strconv.FormatUint(c.GetId(), 10) }

// isRefusal reports whether err is the store's answer rather than a
// failure to reach it: retrying would get the same.
func isRefusal(err error) bool {
	return errors.Is(err, client.ErrFailedPrecondition) || errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrInvalidArgument)
}

// finish settles (accepted) or releases (refused) the claim, retrying
// store failures with backoff until ctx ends. A settle refused because the
// claim was released by hand cancels the order.
func (w *Worker) finish(ctx context.Context, c *pb.Claim, v verdict, log *slog.Logger) {
	backoff := backoffMin
	for {
		var err error
		if v == accepted {
			_, err = w.store.Settle(ctx, &pb.SettleRequest{ClaimId: c.GetId(), RequestId: requestID("settle-", c)})
		} else {
			_, err = w.store.Release(ctx, &pb.ReleaseRequest{ClaimId: c.GetId(), RequestId: requestID("release-", c)})
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
			// The claim was released (by hand: a marked reservation
			// does not expire) while the order was being placed: its
			// stock may be someone else's now, so the order must go.
			w.stats.conflicts.Add(1)
			log.Warn("order accepted but the claim was already released; cancelling the order")
			w.cancelOrder(ctx, c, log)
			return
		case v == accepted && errors.Is(err, client.ErrCompensating):
			// This worker's settle came after its lease ended and the
			// reservation's deadline passed, and the next worker has
			// started to cancel the order: it cancels and releases.
			w.stats.conflicts.Add(1)
			log.Warn("order accepted but another worker is cancelling it (the lease ended and the reservation expired first)")
			return
		case errors.Is(err, client.ErrAlreadySettled):
			// Refused by the order service but settled elsewhere (by
			// hand): the order service and the store disagree, and
			// only a person can tell which is right.
			w.stats.conflicts.Add(1)
			log.Error("order refused but the claim is already settled", "err", err)
			return
		case isRefusal(err):
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

// compensate takes a claim to compensate (marked as ordering, past its
// deadline) to released: it records in the store that it is cancelling the
// order (from then on the claim cannot be settled), cancels the order, and
// releases the claim. Each step is idempotent, so a worker that dies in
// between leaves the claim in the feed and the next one does it again. A
// claim settled first keeps its order.
func (w *Worker) compensate(ctx context.Context, c *pb.Claim, log *slog.Logger) {
	err := w.retryStore(ctx, log, "mark cancelling", func() error {
		_, err := w.store.MarkCancelling(ctx, &pb.MarkCancellingRequest{ClaimId: c.GetId(), RequestId: requestID("cancel-", c)})
		return err
	})
	switch {
	case errors.Is(err, client.ErrAlreadySettled), errors.Is(err, client.ErrAlreadyReleased):
		log.Debug("claim to compensate already settled or released", "err", err)
		return
	case err != nil:
		log.Error("claim to compensate not marked as cancelling; the feed hands it out again", "err", err)
		return
	}
	log.Warn("reservation expired while its order was placed; cancelling the order")
	if !w.cancelOrder(ctx, c, log) {
		return // still cancelling, holding its stock: the feed hands it out again
	}
	err = w.retryStore(ctx, log, "release", func() error {
		_, err := w.store.Release(ctx, &pb.ReleaseRequest{ClaimId: c.GetId(), RequestId: requestID("release-", c)})
		return err
	})
	if err != nil {
		log.Error("compensated claim not released; the feed hands it out again", "err", err)
		return
	}
	w.stats.compensated.Add(1)
	log.Info("claim compensated: order cancelled, stock back on sale")
}

// retryStore calls call until it succeeds, the store refuses, or ctx ends,
// retrying failures with backoff. It returns nil, the refusal, or the last
// failure.
func (w *Worker) retryStore(ctx context.Context, log *slog.Logger, what string, call func() error) error {
	backoff := backoffMin
	for {
		err := call()
		if err == nil || isRefusal(err) || ctx.Err() != nil {
			return err
		}
		log.Warn(what+" failed; retrying", "err", err)
		w.stats.retries.Add(1)
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, backoffMax)
	}
}

// cancelOrder POSTs the order to the cancel URL with the same idempotency
// key until the order service answers 2xx (cancelled, or cancelled before)
// or 404 (no such order: the order call never took effect, and the service
// refuses the key from now on), or refuses for good, retrying transient
// failures with backoff until ctx ends. It reports whether no order is
// left.
func (w *Worker) cancelOrder(ctx context.Context, c *pb.Claim, log *slog.Logger) bool {
	backoff := backoffMin
	for {
		v, code, detail := w.post(ctx, w.cfg.CancelURL, c)
		switch {
		case v == accepted:
			w.stats.cancelled.Add(1)
			log.Info("order cancelled", "detail", detail)
			return true
		case code == http.StatusNotFound:
			w.stats.noOrder.Add(1)
			log.Info("no order to cancel", "detail", detail)
			return true
		case v == refused:
			w.stats.cancelFailed.Add(1)
			log.Error("order service refused to cancel the order: cancel it by hand", "detail", detail)
			return false
		case ctx.Err() != nil:
			w.stats.cancelFailed.Add(1)
			log.Error("order not cancelled before giving up: cancel it by hand", "detail", detail)
			return false
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
