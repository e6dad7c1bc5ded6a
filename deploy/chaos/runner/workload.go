package runner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashd/flashd/deploy/chaos/check"
)

// The recovery probe claims one unit at a time from an item that never
// runs out, as a handful of users with a high limit: a granted probe says
// the cluster takes writes, whatever the workload's items have left.
const (
	probeUsers = 10
	probeStock = 1_000_000
	probeLimit = 1_000_000
	probeItem  = "probe"
)

// workload makes the claims: Workers goroutines and one probe.
type workload struct {
	cfg       Config
	items     []check.ItemSpec // campaign items, then the probe item
	campaigns [][]int          // item indexes per campaign, in hot order
	users     []string
	probers   []string
	start0    time.Time

	mu        sync.Mutex
	history   []check.Call
	perItem   map[string]int
	lastGrant atomic.Int64 // End of the latest granted call

	stopping chan struct{}
	wg       sync.WaitGroup
}

func newWorkload(cfg Config) *workload {
	w := &workload{cfg: cfg, perItem: map[string]int{}, stopping: make(chan struct{})}
	w.lastGrant.Store(-1)
	rng := rngFor(cfg.Seed, 1)
	campaigns := int(cfg.Duration/cfg.CampaignEvery) + 1
	for c := 0; c < campaigns; c++ {
		var idx []int
		for i := 0; i < cfg.Items; i++ {
			idx = append(idx, len(w.items))
			w.items = append(w.items, check.ItemSpec{
				Campaign:     fmt.Sprintf("%s-c%d", cfg.RunID, c),
				Item:         fmt.Sprintf("item%d", i),
				Stock:        cfg.StockMin + rng.Uint64N(cfg.StockMax-cfg.StockMin+1),
				PerUserLimit: 1 + rng.Uint32N(cfg.PerUserLimitMax),
			})
		}
		w.campaigns = append(w.campaigns, idx)
	}
	w.items = append(w.items, check.ItemSpec{Campaign: cfg.RunID + "-probe", Item: probeItem, Stock: probeStock, PerUserLimit: probeLimit})
	for u := 0; u < cfg.Users; u++ {
		w.users = append(w.users, fmt.Sprintf("%s-u%d", cfg.RunID, u))
	}
	for u := 0; u < probeUsers; u++ {
		w.probers = append(w.probers, fmt.Sprintf("%s-p%d", cfg.RunID, u))
	}
	return w
}

func (w *workload) allUsers() []string {
	return append(append([]string(nil), w.users...), w.probers...)
}

func (w *workload) now() int64 { return int64(time.Since(w.start0)) }

func (w *workload) start(ctx context.Context, t Target) {
	w.start0 = time.Now()
	for i := 0; i < w.cfg.Workers; i++ {
		w.wg.Add(1)
		go w.worker(ctx, t, i)
	}
	w.wg.Add(1)
	go w.probe(ctx, t)
}

// stop asks the workers to finish their call in flight and waits for them.
func (w *workload) stop() {
	close(w.stopping)
	w.wg.Wait()
}

func (w *workload) stopped(ctx context.Context) bool {
	select {
	case <-w.stopping:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func (w *workload) calls() []check.Call {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]check.Call(nil), w.history...)
}

// admit reserves room in the history for a first call on an item. The
// probe item is bounded by time only (one call per ProbeInterval, one at a
// time): its history is sequential and cheap to check.
func (w *workload) admit(item string, probe bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.history) >= w.cfg.MaxCalls || (!probe && w.perItem[item] >= w.cfg.MaxCallsPerItem) {
		return false
	}
	w.perItem[item]++
	return true
}

// call makes one claim call and records it.
func (w *workload) call(ctx context.Context, t Target, worker int, req ClaimRequest, probe bool) check.Call {
	c := check.Call{Worker: worker, Campaign: req.Campaign, Item: req.Item, User: req.User,
		RequestID: req.RequestID, Quantity: req.Quantity, Probe: probe, Start: w.now()}
	callCtx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	res := t.Claim(callCtx, req)
	cancel()
	c.End = w.now()
	c.Outcome, c.ClaimID, c.Reason = res.Outcome, res.ClaimID, res.Reason
	if c.Outcome == "" {
		c.Outcome = check.Unknown
	}
	if c.Outcome == check.Granted {
		for {
			last := w.lastGrant.Load()
			if c.End <= last || w.lastGrant.CompareAndSwap(last, c.End) {
				break
			}
		}
	}
	w.mu.Lock()
	w.history = append(w.history, c)
	w.mu.Unlock()
	return c
}

type resend struct {
	req   ClaimRequest
	due   time.Time
	count int
}

func (w *workload) worker(ctx context.Context, t Target, id int) {
	defer w.wg.Done()
	rng := rngFor(w.cfg.Seed, 100+uint64(id))
	var queue []resend
	for n := 0; !w.stopped(ctx); n++ {
		var req ClaimRequest
		count := 0
		if len(queue) > 0 && !time.Now().Before(queue[0].due) {
			req, count = queue[0].req, queue[0].count
			queue = queue[1:]
		} else {
			var ok bool
			if req, ok = w.next(rng, id, n); !ok {
				sleep(ctx, w.cfg.Think)
				continue
			}
		}
		c := w.call(ctx, t, id, req, false)
		if c.Outcome == check.Unknown && count < w.cfg.MaxResends {
			// Resume the claim later with the same request ID, as an app
			// does after a timeout.
			pause := w.cfg.Think*5 + time.Duration(rng.Int64N(int64(w.cfg.Think*20+1)))
			queue = append(queue, resend{req: req, due: time.Now().Add(pause), count: count + 1})
		}
		sleep(ctx, time.Duration(rng.ExpFloat64()*float64(w.cfg.Think)))
	}
}

// next draws a new claim: mostly on the hot campaign, some on older ones
// (sold out by now, most likely: the caches' path), from a random user.
func (w *workload) next(rng *rand.Rand, worker, n int) (ClaimRequest, bool) {
	active := int(time.Since(w.start0)/w.cfg.CampaignEvery) + 1
	active = min(active, len(w.campaigns))
	c := active - 1
	if rng.IntN(4) == 0 {
		c = rng.IntN(active)
	}
	spec := w.items[w.campaigns[c][rng.IntN(len(w.campaigns[c]))]]
	if !w.admit(spec.Key(), false) {
		return ClaimRequest{}, false
	}
	// Mostly single units; sometimes more, up to the item's limit.
	q := uint32(1)
	if top := min(w.cfg.QuantityMax, spec.PerUserLimit); top > 1 && rng.IntN(6) == 0 {
		q = 2 + rng.Uint32N(top-1)
	}
	return ClaimRequest{
		Campaign: spec.Campaign, Item: spec.Item, User: w.users[rng.IntN(len(w.users))],
		RequestID: fmt.Sprintf("%s-w%d-%d", w.cfg.RunID, worker, n), Quantity: q,
	}, true
}

// probe claims one unit of the probe item every ProbeInterval.
func (w *workload) probe(ctx context.Context, t Target) {
	defer w.wg.Done()
	spec := w.items[len(w.items)-1]
	tick := time.NewTicker(w.cfg.ProbeInterval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-w.stopping:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !w.admit(spec.Key(), true) {
			continue
		}
		w.call(ctx, t, w.cfg.Workers, ClaimRequest{
			Campaign: spec.Campaign, Item: spec.Item, User: w.probers[n%len(w.probers)],
			RequestID: fmt.Sprintf("%s-probe-%d", w.cfg.RunID, n), Quantity: 1,
		}, true)
	}
}

// waitGranted waits until a claim granted after the instant after ends, or
// timeout.
func (w *workload) waitGranted(ctx context.Context, after int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if w.lastGrant.Load() > after {
			return true
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return false
		}
	}
	return false
}
