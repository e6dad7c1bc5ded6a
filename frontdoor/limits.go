package frontdoor

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// keyLimiter is one key's token bucket and the rate it was made for.
type keyLimiter struct {
	lim  *rate.Limiter
	rate float64
}

// frequencyLimiter keeps a token bucket per key (a client IP or a user) in
// bounded memory: the least recently seen key is forgotten first, and a
// forgotten key starts again with a full bucket. The bucket holds one
// second of tokens.
type frequencyLimiter[K comparable] struct {
	keys *boundedMap[K, keyLimiter]
}

func newFrequencyLimiter[K comparable](maxKeys int) *frequencyLimiter[K] {
	return &frequencyLimiter[K]{keys: newBoundedMap[K, keyLimiter](maxKeys)}
}

// allow takes a token from k's bucket, refilled at r per second; r <= 0
// means no limit (and no key is tracked). A changed rate applies to a
// bucket the next time its key is seen.
func (f *frequencyLimiter[K]) allow(k K, r float64, now time.Time) bool {
	if r <= 0 {
		return true
	}
	ok := false
	f.keys.update(k, true, func(v *keyLimiter) {
		switch {
		case v.lim == nil:
			v.lim, v.rate = rate.NewLimiter(rate.Limit(r), bucketSize(r)), r
		case v.rate != r:
			v.lim.SetLimitAt(now, rate.Limit(r))
			v.lim.SetBurstAt(now, bucketSize(r))
			v.rate = r
		}
		ok = v.lim.AllowN(now, 1)
	})
	return ok
}

// bucketSize is one second of tokens, at least one.
func bucketSize(r float64) int {
	return int(min(max(math.Ceil(r), 1), math.MaxInt32))
}

// globalBurst is how much of its share a front door may admit at once in
// bucket mode: a tenth of a second, so the sum over doors stays near the
// global limit over any second.
const globalBurst = 100 * time.Millisecond

// globalLimiter enforces this front door's share of the global rate limit:
// global rate x its weight / the sum of the live front doors' weights.
//
// Bucket mode (the default) is a token bucket at that rate. Strict mode
// counts admissions in windows keyed by the Unix second, as the published
// architecture's global counters keyed by timestamp do: a window admits at
// most floor(share) and unused budget never carries over, so the total over
// any wall-clock second stays at or under the global limit as long as the
// doors' clocks agree and their shares add up to at most 1. To keep that
// true while a front door joins, a new door admits nothing until every
// other door has had a heartbeat that counts it (see warmUntil).
type globalLimiter struct {
	limited atomic.Bool // fast path: false means no global limit
	strict  bool

	mu        sync.Mutex
	rate      float64 // this door's admissions per second; 0: no limit
	bucket    *rate.Limiter
	window    int64 // strict: the Unix second being counted
	used      int64
	warmUntil time.Time
}

func newGlobalLimiter(strict bool) *globalLimiter {
	return &globalLimiter{strict: strict, bucket: rate.NewLimiter(rate.Inf, 1)}
}

// set changes this door's rate; r <= 0 lifts the limit.
func (g *globalLimiter) set(r float64, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r <= 0 {
		g.rate = 0
		g.bucket.SetLimitAt(now, rate.Inf)
		g.limited.Store(false)
		return
	}
	if r != g.rate {
		g.rate = r
		g.bucket.SetLimitAt(now, rate.Limit(r))
		g.bucket.SetBurstAt(now, max(1, int(r*globalBurst.Seconds())))
	}
	g.limited.Store(true)
}

// holdUntil makes a strict limiter admit nothing before t.
func (g *globalLimiter) holdUntil(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.warmUntil = t
}

func (g *globalLimiter) currentRate() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rate
}

func (g *globalLimiter) allow(now time.Time) bool {
	if !g.limited.Load() {
		return true
	}
	if !g.strict {
		return g.bucket.AllowN(now, 1)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.warmUntil) {
		return false
	}
	if sec := now.Unix(); sec != g.window {
		g.window, g.used = sec, 0
	}
	if float64(g.used+1) > math.Floor(g.rate) {
		return false
	}
	g.used++
	return true
}

// computeShare returns this door's fraction of the global limit and the
// number of live doors: its weight over the sum of the live doors' weights
// (a weight of 0 counts as 1). If the live set lacks this door (it was just
// forgotten), it is counted in.
func computeShare(selfID string, selfWeight float64, live []*pb.FrontDoorPresence) (float64, int) {
	if selfWeight <= 0 {
		selfWeight = 1
	}
	sum, n, seen := 0.0, 0, false
	for _, d := range live {
		w := d.GetWeight()
		if w <= 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			w = 1
		}
		if d.GetId() == selfID {
			w, seen = selfWeight, true
		}
		sum += w
		n++
	}
	if !seen {
		sum += selfWeight
		n++
	}
	return selfWeight / sum, n
}
