package frontdoor

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// result is an entry's answer: the store's (value) or the refusal.
type result[V any] struct {
	value V
	err   error
}

// claimResult is a claim's answer: the granted claim or the refusal.
type claimResult = result[*pb.Claim]

// waiter is the coalescer's part of an entry it batches (a claim, a draw):
// who wins it, and how its answer reaches the caller.
type waiter[E any, V any] struct {
	state atomic.Int32

	// The answer is written to result, then the entry is sent on done,
	// which has room for it (and, for a ClaimMany call, for every claim of
	// the call: they share one channel), so delivering never blocks.
	result result[V]
	done   chan E
	slot   int // the entry's place among those sharing done
}

// entry is what a coalescer batches: *pendingClaim, *pendingDraw.
type entry[E any, V any] interface {
	waiting() *waiter[E, V]
}

// pendingClaim is a claim admitted to the coalescer.
type pendingClaim struct {
	waiter[*pendingClaim, *pb.Claim]
	req    *pb.ClaimRequest
	claim  pb.ClaimRequest // what req points to, when the front door made it: one allocation less
	item   *itemEntry      // nil when the catalog does not know the item
	bypass bool            // a retry sent past the caches: never answered from them
}

func (p *pendingClaim) waiting() *waiter[*pendingClaim, *pb.Claim] { return &p.waiter }

// States of an entry: only one of the dispatcher (queued → sent) and the
// caller giving up (queued → abandoned) wins.
const (
	claimQueued int32 = iota
	claimSent
	claimAbandoned
)

// batchSender sends one batch to the store and turns the answer into each
// entry's result, in order, learning from it on the way (caches,
// metrics); err is the batch's failure, if any (every result then carries
// its refusal), which tells the coalescer whether the store is down.
type batchSender[E any, V any] func(ctx context.Context, batch []E) ([]result[V], error)

// staleRefusal says why an entry that waited for its batch is refused
// without the store (the caches learnt meanwhile that the store would
// refuse it), or nil to send it.
type staleRefusal[E any] func(p E) error

// batchMetrics are the figures of one coalescer's batches.
type batchMetrics struct {
	batches prometheus.Counter
	size    prometheus.Histogram
	latency prometheus.Histogram
}

// coalescer packs entries (claims, or card draws) into batches for the
// store (stage 7); the door has one per kind, since each kind is its own
// store call. An entry waits at most one batch window: a batch leaves when
// it is full, when the window of its first entry ends, or at once when no
// batch is in flight (group commit: the store's answer to one batch is the
// signal to send the next, so batches grow with the load and a lone entry
// waits for nothing). At most batchesInFlight batches are in flight;
// entries that arrive meanwhile wait in a bounded queue, and a full queue
// refuses at once.
type coalescer[E entry[E, V], V any] struct {
	send         batchSender[E, V]
	stale        staleRefusal[E] // nil: no entry goes stale
	batchMax     int
	window       time.Duration
	storeTimeout time.Duration

	queue    chan E
	slots    chan struct{} // one token per batch in flight
	idle     chan struct{} // signalled when the last batch in flight returns
	inFlight atomic.Int32  // batches
	claimsIn atomic.Int64  // claims admitted and not yet answered or abandoned

	limit   *adaptiveLimit
	enforce atomic.Bool  // the adaptive limit refuses claims (degradation L1)
	shed    atomic.Int64 // claims refused by the adaptive limit
	arrived atomic.Int64 // claims submitted
	downAt  atomic.Int64 // Unix nanoseconds until which the store is taken as down
	m       *metrics
	bm      batchMetrics
	now     func() time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

// storeDownFor is how long claims are refused at once after a batch found
// no store (all retries spent): callers get UNAVAILABLE immediately instead
// of queueing behind batches that will fail too. Then traffic is let
// through again, and the next batch tells.
const storeDownFor = 500 * time.Millisecond

func newCoalescer[E entry[E, V], V any](cfg Config, send batchSender[E, V], stale staleRefusal[E], m *metrics, bm batchMetrics) *coalescer[E, V] {
	c := &coalescer[E, V]{
		send: send, stale: stale,
		batchMax: cfg.BatchMax, window: cfg.BatchWindow, storeTimeout: cfg.StoreTimeout,
		queue: make(chan E, cfg.QueueMax),
		slots: make(chan struct{}, cfg.BatchesInFlight),
		idle:  make(chan struct{}, 1),
		limit: newAdaptiveLimit(cfg.BatchMax, cfg.BatchesInFlight, cfg.QueueMax),
		m:     m, bm: bm, now: cfg.Now,
		stop: make(chan struct{}),
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// close stops the dispatcher, refuses what is queued, and waits for the
// batches in flight (each bounded by the store timeout).
func (c *coalescer[E, V]) close() {
	close(c.stop)
	c.wg.Wait()
}

// submit admits an entry and waits for its answer or for ctx to end.
func (c *coalescer[E, V]) submit(ctx context.Context, p E) result[V] {
	return c.submitMany(ctx, []E{p})[0]
}

// submitMany admits claims together and waits for their answers, or for
// ctx to end: the claims of one ClaimMany call. It returns the results in
// the order of ps.
func (c *coalescer[E, V]) submitMany(ctx context.Context, ps []E) []result[V] {
	out := make([]result[V], len(ps))
	answered := make([]bool, len(ps))
	done := make(chan E, len(ps))
	waiting := 0
	for i, p := range ps {
		w := p.waiting()
		w.done, w.slot = done, i
		if r, ok := c.enqueue(p); ok {
			waiting++
		} else {
			out[i], answered[i] = r, true
		}
	}
	for ; waiting > 0; waiting-- {
		select {
		case p := <-done:
			w := p.waiting()
			out[w.slot], answered[w.slot] = w.result, true
		case <-ctx.Done():
			c.abandon(ctx, ps, out, answered)
			return out
		}
	}
	return out
}

// abandon gives up the claims of ps not yet answered when ctx ends: those
// still queued are never sent; those sent may be applied, but the caller
// never hears of it, so nothing is acknowledged, and a retry with the same
// request ID gets the store's first answer.
func (c *coalescer[E, V]) abandon(ctx context.Context, ps []E, out []result[V], answered []bool) {
	for i, p := range ps {
		if answered[i] {
			continue
		}
		if p.waiting().state.CompareAndSwap(claimQueued, claimAbandoned) {
			c.claimsIn.Add(-1)
			c.m.coalAbandoned.Inc()
		}
		out[i] = result[V]{err: contextError(ctx)}
	}
}

// enqueue admits a claim to the queue, or refuses it at once (the store
// is down, the adaptive limit, a full queue): ok is false with the refusal.
func (c *coalescer[E, V]) enqueue(p E) (refusal result[V], ok bool) {
	c.arrived.Add(1)
	if c.now().UnixNano() < c.downAt.Load() {
		c.m.coalStoreDown.Inc()
		return result[V]{err: errStoreDown}, false
	}
	if n := c.claimsIn.Add(1); c.enforce.Load() && n > c.limit.limit.Load() {
		c.claimsIn.Add(-1)
		c.shed.Add(1)
		c.m.coalShed.Inc()
		return result[V]{err: errShed}, false
	}
	select {
	case c.queue <- p:
	default:
		c.claimsIn.Add(-1)
		c.m.coalQueueFull.Inc()
		return result[V]{err: errQueueFull}, false
	}
	c.m.coalOK.Inc()
	return result[V]{}, true
}

// run is the dispatcher: it forms batches and hands them to senders.
func (c *coalescer[E, V]) run() {
	defer c.wg.Done()
	window := time.NewTimer(time.Hour)
	window.Stop()
	for {
		var first E
		select {
		case first = <-c.queue:
		case <-c.stop:
			c.refuseQueued(nil)
			return
		}
		batch := make([]E, 1, c.batchMax)
		batch[0] = first
		if c.inFlight.Load() > 0 && c.window > 0 && c.batchMax > 1 {
			window.Reset(c.window)
		fill:
			for len(batch) < c.batchMax {
				select {
				case p := <-c.queue:
					batch = append(batch, p)
				case <-window.C:
					break fill
				case <-c.idle:
					if c.inFlight.Load() == 0 {
						break fill
					}
				case <-c.stop:
					window.Stop()
					c.refuseQueued(batch)
					return
				}
			}
			window.Stop()
		}
		select {
		case c.slots <- struct{}{}:
		case <-c.stop:
		}
		select {
		case <-c.stop: // stopping: a batch not yet sent is refused
			c.refuseQueued(batch)
			return
		default:
		}
		batch = c.topUp(batch) // claims that queued while waiting for a slot
		batch = c.claimForSending(batch)
		if len(batch) == 0 {
			<-c.slots
			continue
		}
		c.inFlight.Add(1)
		c.wg.Add(1)
		go c.dispatch(batch)
	}
}

// topUp adds claims already queued, without waiting, up to a full batch.
func (c *coalescer[E, V]) topUp(batch []E) []E {
	for len(batch) < c.batchMax {
		select {
		case p := <-c.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// claimForSending drops entries their callers abandoned and answers those
// the caches learnt to refuse while they waited (an item that sold out
// meanwhile costs the store nothing more), keeping the rest in order.
func (c *coalescer[E, V]) claimForSending(batch []E) []E {
	kept := batch[:0]
	for _, p := range batch {
		if !p.waiting().state.CompareAndSwap(claimQueued, claimSent) {
			continue // abandoned: already uncounted
		}
		if c.stale != nil {
			if err := c.stale(p); err != nil {
				c.deliver(p, result[V]{err: err})
				continue
			}
		}
		kept = append(kept, p)
	}
	clear(batch[len(kept):])
	return kept
}

func (c *coalescer[E, V]) dispatch(batch []E) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), c.storeTimeout)
	start := time.Now()
	results, err := c.send(ctx, batch)
	took := time.Since(start)
	cancel()
	<-c.slots
	if c.inFlight.Add(-1) == 0 {
		select {
		case c.idle <- struct{}{}:
		default:
		}
	}
	switch {
	case err == nil:
		c.downAt.Store(0)
	case storeDown(err):
		c.downAt.Store(c.now().Add(storeDownFor).UnixNano())
	}
	c.bm.batches.Inc()
	c.bm.size.Observe(float64(len(batch)))
	c.bm.latency.Observe(took.Seconds())
	c.limit.observe(took, len(c.queue), int(c.claimsIn.Load()), c.now())
	for i, r := range results {
		c.deliver(batch[i], r)
	}
}

func (c *coalescer[E, V]) deliver(p E, r result[V]) {
	c.claimsIn.Add(-1)
	w := p.waiting()
	w.result = r
	w.done <- p // buffered: never blocks, even if the caller has left
}

// refuseQueued answers a formed batch and everything queued with
// UNAVAILABLE when the front door stops.
func (c *coalescer[E, V]) refuseQueued(batch []E) {
	for _, p := range batch {
		if p.waiting().state.CompareAndSwap(claimQueued, claimSent) {
			c.deliver(p, result[V]{err: errShuttingDown})
		}
	}
	for {
		select {
		case p := <-c.queue:
			if p.waiting().state.CompareAndSwap(claimQueued, claimSent) {
				c.deliver(p, result[V]{err: errShuttingDown})
			}
		default:
			return
		}
	}
}

// queued is the number of entries waiting for a batch.
func (c *coalescer[E, V]) queued() int { return len(c.queue) }
