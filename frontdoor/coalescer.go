package frontdoor

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// claimResult is a claim's answer: the granted claim or the refusal.
type claimResult struct {
	claim *pb.Claim
	err   error
}

// pendingClaim is a claim admitted to the coalescer.
type pendingClaim struct {
	req    *pb.ClaimRequest
	claim  pb.ClaimRequest // what req points to, when the front door made it: one allocation less
	item   *itemEntry      // nil when the catalog does not know the item
	bypass bool            // a retry sent past the caches: never answered from them
	state  atomic.Int32

	// The answer is written to result, then the claim is sent on done,
	// which has room for it (and, for a ClaimMany call, for every claim of
	// the call: they share one channel), so delivering never blocks.
	result claimResult
	done   chan *pendingClaim
	slot   int // the claim's place among those sharing done
}

// States of a pendingClaim: only one of the dispatcher (queued → sent) and
// the caller giving up (queued → abandoned) wins.
const (
	claimQueued int32 = iota
	claimSent
	claimAbandoned
)

// batchAnswer turns the store's answer to a batch into each claim's
// result, learning from it on the way (caches, metrics). resp is nil when
// err is set.
type batchAnswer func(batch []*pendingClaim, resp *pb.ClaimBatchResponse, err error) []claimResult

// coalescer packs claims into batches for the store (stage 7). A claim
// waits at most one batch window: a batch leaves when it is full, when the
// window of its first claim ends, or at once when no batch is in flight
// (group commit: the store's answer to one batch is the signal to send the
// next, so batches grow with the load and a lone claim waits for nothing).
// At most batchesInFlight batches are in flight; claims that arrive
// meanwhile wait in a bounded queue, and a full queue refuses at once.
type coalescer struct {
	store        Store
	answer       batchAnswer
	batchMax     int
	window       time.Duration
	storeTimeout time.Duration

	queue    chan *pendingClaim
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
	now     func() time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

// storeDownFor is how long claims are refused at once after a batch found
// no store (all retries spent): callers get UNAVAILABLE immediately instead
// of queueing behind batches that will fail too. Then traffic is let
// through again, and the next batch tells.
const storeDownFor = 500 * time.Millisecond

func newCoalescer(cfg Config, store Store, answer batchAnswer, m *metrics) *coalescer {
	c := &coalescer{
		store: store, answer: answer,
		batchMax: cfg.BatchMax, window: cfg.BatchWindow, storeTimeout: cfg.StoreTimeout,
		queue: make(chan *pendingClaim, cfg.QueueMax),
		slots: make(chan struct{}, cfg.BatchesInFlight),
		idle:  make(chan struct{}, 1),
		limit: newAdaptiveLimit(cfg.BatchMax, cfg.BatchesInFlight, cfg.QueueMax),
		m:     m, now: cfg.Now,
		stop: make(chan struct{}),
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// close stops the dispatcher, refuses what is queued, and waits for the
// batches in flight (each bounded by the store timeout).
func (c *coalescer) close() {
	close(c.stop)
	c.wg.Wait()
}

// submit admits a claim and waits for its answer or for ctx to end.
func (c *coalescer) submit(ctx context.Context, p *pendingClaim) claimResult {
	return c.submitMany(ctx, []*pendingClaim{p})[0]
}

// submitMany admits claims together and waits for their answers, or for
// ctx to end: the claims of one ClaimMany call. It returns the results in
// the order of ps.
func (c *coalescer) submitMany(ctx context.Context, ps []*pendingClaim) []claimResult {
	out := make([]claimResult, len(ps))
	answered := make([]bool, len(ps))
	done := make(chan *pendingClaim, len(ps))
	waiting := 0
	for i, p := range ps {
		p.done, p.slot = done, i
		if r, ok := c.enqueue(p); ok {
			waiting++
		} else {
			out[i], answered[i] = r, true
		}
	}
	for ; waiting > 0; waiting-- {
		select {
		case p := <-done:
			out[p.slot], answered[p.slot] = p.result, true
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
func (c *coalescer) abandon(ctx context.Context, ps []*pendingClaim, out []claimResult, answered []bool) {
	for i, p := range ps {
		if answered[i] {
			continue
		}
		if p.state.CompareAndSwap(claimQueued, claimAbandoned) {
			c.claimsIn.Add(-1)
			c.m.coalAbandoned.Inc()
		}
		out[i] = claimResult{err: contextError(ctx)}
	}
}

// enqueue admits a claim to the queue, or refuses it at once (the store
// is down, the adaptive limit, a full queue): ok is false with the refusal.
func (c *coalescer) enqueue(p *pendingClaim) (refusal claimResult, ok bool) {
	c.arrived.Add(1)
	if c.now().UnixNano() < c.downAt.Load() {
		c.m.coalStoreDown.Inc()
		return claimResult{err: errStoreDown}, false
	}
	if n := c.claimsIn.Add(1); c.enforce.Load() && n > c.limit.limit.Load() {
		c.claimsIn.Add(-1)
		c.shed.Add(1)
		c.m.coalShed.Inc()
		return claimResult{err: errShed}, false
	}
	select {
	case c.queue <- p:
	default:
		c.claimsIn.Add(-1)
		c.m.coalQueueFull.Inc()
		return claimResult{err: errQueueFull}, false
	}
	c.m.coalOK.Inc()
	return claimResult{}, true
}

// run is the dispatcher: it forms batches and hands them to senders.
func (c *coalescer) run() {
	defer c.wg.Done()
	window := time.NewTimer(time.Hour)
	window.Stop()
	for {
		var first *pendingClaim
		select {
		case first = <-c.queue:
		case <-c.stop:
			c.refuseQueued(nil)
			return
		}
		batch := make([]*pendingClaim, 1, c.batchMax)
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
		go c.send(batch)
	}
}

// topUp adds claims already queued, without waiting, up to a full batch.
func (c *coalescer) topUp(batch []*pendingClaim) []*pendingClaim {
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

// claimForSending drops claims their callers abandoned and answers those
// the caches learnt to refuse while they waited (an item that sold out
// meanwhile costs the store nothing more), keeping the rest in order.
func (c *coalescer) claimForSending(batch []*pendingClaim) []*pendingClaim {
	kept := batch[:0]
	for _, p := range batch {
		if !p.state.CompareAndSwap(claimQueued, claimSent) {
			continue // abandoned: already uncounted
		}
		if !p.bypass && p.item != nil && p.item.soldOut.Load() {
			c.m.coalSoldOut.Inc()
			c.deliver(p, claimResult{err: errSoldOut})
			continue
		}
		kept = append(kept, p)
	}
	clear(batch[len(kept):])
	return kept
}

func (c *coalescer) send(batch []*pendingClaim) {
	defer c.wg.Done()
	req := &pb.ClaimBatchRequest{Claims: make([]*pb.ClaimRequest, len(batch))}
	for i, p := range batch {
		req.Claims[i] = p.req
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.storeTimeout)
	start := time.Now()
	resp, err := c.store.ClaimBatch(ctx, req)
	took := time.Since(start)
	cancel()
	if err == nil && len(resp.GetOutcomes()) != len(batch) {
		err = errBadBatchAnswer
	}
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
	c.m.batches.Inc()
	c.m.batchSize.Observe(float64(len(batch)))
	c.m.batchLatency.Observe(took.Seconds())
	c.limit.observe(took, len(c.queue), int(c.claimsIn.Load()), c.now())
	for i, r := range c.answer(batch, resp, err) {
		c.deliver(batch[i], r)
	}
}

func (c *coalescer) deliver(p *pendingClaim, r claimResult) {
	c.claimsIn.Add(-1)
	p.result = r
	p.done <- p // buffered: never blocks, even if the caller has left
}

// refuseQueued answers a formed batch and everything queued with
// UNAVAILABLE when the front door stops.
func (c *coalescer) refuseQueued(batch []*pendingClaim) {
	for _, p := range batch {
		if p.state.CompareAndSwap(claimQueued, claimSent) {
			c.deliver(p, claimResult{err: errShuttingDown})
		}
	}
	for {
		select {
		case p := <-c.queue:
			if p.state.CompareAndSwap(claimQueued, claimSent) {
				c.deliver(p, claimResult{err: errShuttingDown})
			}
		default:
			return
		}
	}
}

// queued is the number of claims waiting for a batch.
func (c *coalescer) queued() int { return len(c.queue) }
