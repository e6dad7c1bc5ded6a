package demo

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// How simulated users behave.
const (
	pressesMax      = 3                      // presses of the button per user, at most
	botPressesMax   = 10                     // a bot presses more
	botShare        = 500                    // one user in botShare is a bot
	botPause        = 50 * time.Millisecond  // a bot presses again this soon
	humanPauseMin   = 500 * time.Millisecond // a person presses again after a busy answer...
	humanPauseSpan  = 1500 * time.Millisecond
	waveLatenessMax = time.Second     // ...and comes back up to this late when a wave opens
	pressTimeout    = 5 * time.Second // a press the app gives up on
	otherItemChance = 0.3             // after a sold out, the chance a user tries another item
)

// outcome is what one press of the button got.
type outcome int

const (
	outGranted outcome = iota
	outSoldOut
	outLimitReached
	outNotEligible
	outClosed
	outRateLimited // RESOURCE_EXHAUSTED RATE_LIMITED, after the client's retries
	outOverloaded  // other RESOURCE_EXHAUSTED: L2 drop, queue full, shed
	outDropped     // dropped by the client library (L3)
	outUnavailable // the store or the front doors failed
	outTimeout     // the press outlived its deadline
	outOther       // anything else: a bug, shown as such
	outcomeCount
)

var outcomeNames = [outcomeCount]string{
	"granted", "sold out", "limit reached", "not eligible yet", "campaign closed", "rate limited",
	"overloaded", "dropped by client (L3)", "unavailable", "timed out", "other error",
}

func classify(err error) outcome {
	switch {
	case err == nil:
		return outGranted
	case errors.Is(err, client.ErrSoldOut):
		return outSoldOut
	case errors.Is(err, client.ErrLimitReached):
		return outLimitReached
	case errors.Is(err, client.ErrNotEligible):
		return outNotEligible
	case errors.Is(err, client.ErrCampaignClosed):
		return outClosed
	case errors.Is(err, client.ErrDropped):
		return outDropped
	case errors.Is(err, client.ErrRateLimited):
		return outRateLimited
	case errors.Is(err, client.ErrOverloaded):
		return outOverloaded
	case errors.Is(err, client.ErrUnavailable):
		return outUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return outTimeout
	}
	return outOther
}

// user is one simulated person (or bot) at the sale.
type user struct {
	id        string
	at        time.Time // the next press
	presses   int
	bot       bool
	item      int    // index of the item wanted now
	tried     uint64 // bit i: item i tried and found sold out
	requestID string // the logical claim in progress; kept while it is busy or its outcome unknown
	resume    bool   // the last press with requestID may have been applied
}

// ack is a claim the store acknowledged to a user.
type ack struct {
	user  string
	item  int
	claim *pb.Claim
}

// crowd drives the simulated users through the client library.
type crowd struct {
	c        *client.Client
	campaign string
	items    []string
	weights  []float64 // cumulative popularity, last = 1
	open     time.Time // the sale opens

	pressed    atomic.Int64 // presses made
	arrived    atomic.Int64 // users who pressed at least once
	finished   atomic.Int64 // users done (granted, or given up)
	outcomes   [outcomeCount]atomic.Int64
	perItem    []atomic.Int64 // grants per item
	soldOutAt  []atomic.Int64 // first SOLD_OUT answer per item, ns since open (0: none yet)
	emptied    func(item int) // told at an item's first SOLD_OUT answer; nil: no one
	otherError atomic.Pointer[string]

	mu        sync.Mutex
	acks      []ack
	latencies [][]time.Duration // per worker, presses that were sent
}

func newCrowd(c *client.Client, campaign string, items []string, open time.Time) *crowd {
	w := &crowd{c: c, campaign: campaign, items: items, open: open, perItem: make([]atomic.Int64, len(items)),
		soldOutAt: make([]atomic.Int64, len(items))}
	// Popularity follows Zipf: the first item is wanted most, so items
	// sell out one after another.
	total := 0.0
	for i := range items {
		total += 1 / float64(i+1)
	}
	acc := 0.0
	for i := range items {
		acc += 1 / float64(i+1) / total
		w.weights = append(w.weights, acc)
	}
	w.weights[len(w.weights)-1] = 1
	return w
}

func (w *crowd) pickItem(r *rand.Rand) int {
	x := r.Float64()
	i, _ := slices.BinarySearch(w.weights, x)
	return min(i, len(w.items)-1)
}

// users makes n users arriving over window after the sale opens, most of
// them at the start: arrival = window * u^2, u uniform.
func (w *crowd) users(n int, window time.Duration, r *rand.Rand) []*user {
	out := make([]*user, n)
	for i := range out {
		u := r.Float64()
		out[i] = &user{
			id:   fmt.Sprintf("u%06d", i),
			at:   w.open.Add(time.Duration(u * u * float64(window))),
			bot:  i%botShare == botShare-1,
			item: w.pickItem(r),
		}
	}
	return out
}

// run presses buttons for users with concurrency presses in flight until
// every user is done or ctx ends. Presses under way when ctx ends finish
// within pressTimeout.
func (w *crowd) run(ctx context.Context, users []*user, concurrency int) {
	s := newScheduler(users)
	work := make(chan *user)
	w.latencies = make([][]time.Duration, concurrency)
	var wg sync.WaitGroup
	for k := range concurrency {
		r := rand.New(rand.NewPCG(uint64(k), 0x5eed))
		wg.Go(func() {
			for u := range work {
				s.done(u, w.press(u, k, r))
			}
		})
	}
	s.dispatch(ctx, work)
	wg.Wait()
}

// press presses the button for u once and reports whether u will press
// again (u.at says when).
func (w *crowd) press(u *user, worker int, r *rand.Rand) bool {
	if u.presses == 0 {
		w.arrived.Add(1)
	}
	u.presses++
	w.pressed.Add(1)
	if u.requestID == "" {
		u.requestID = client.NewRequestID()
	}
	id := client.RequestID(u.requestID)
	if u.resume {
		id = client.Resume(u.requestID) // the last press may have been applied
	}
	ctx, cancel := context.WithTimeout(context.Background(), pressTimeout)
	start := time.Now()
	claim, err := w.c.Claim(ctx, w.campaign, w.items[u.item], client.AsUser(u.id), id)
	elapsed := time.Since(start)
	cancel()
	out := classify(err)
	w.outcomes[out].Add(1)
	if out != outDropped {
		w.latencies[worker] = append(w.latencies[worker], elapsed)
	}

	limit := pressesMax
	if u.bot {
		limit = botPressesMax
	}
	again := u.presses < limit
	pause := humanPauseMin + rand.N(humanPauseSpan)
	if u.bot {
		pause = botPause
	}
	switch out {
	case outGranted:
		w.perItem[u.item].Add(1)
		w.mu.Lock()
		w.acks = append(w.acks, ack{user: u.id, item: u.item, claim: claim})
		w.mu.Unlock()
		again = false
	case outSoldOut:
		if w.soldOutAt[u.item].CompareAndSwap(0, int64(max(time.Since(w.open), 1))) && w.emptied != nil {
			w.emptied(u.item)
		}
		u.tried |= 1 << u.item
		u.requestID, u.resume = "", false
		next := w.untried(u)
		again = again && next >= 0 && r.Float64() < otherItemChance
		u.item = max(next, 0)
	case outNotEligible:
		// The app counts down to the user's wave; the user comes back
		// when it opens, some a little late. This press was refused,
		// so the next one is a new claim.
		u.requestID, u.resume = "", false
		pause = client.RetryAfter(err) + rand.N(waveLatenessMax)
	case outRateLimited, outOverloaded, outDropped, outUnavailable, outTimeout:
		// Busy: press again later with the same request ID (the store
		// grants it at most once), resuming it when the press may have
		// been applied (a timeout, a failover), so that the front door
		// asks the store rather than its caches.
		u.resume = client.MayHaveApplied(err)
	case outOther:
		msg := err.Error()
		w.otherError.CompareAndSwap(nil, &msg)
		again = false
	default: // limit reached, campaign closed: final
		again = false
	}
	if !again {
		w.finished.Add(1)
		return false
	}
	u.at = time.Now().Add(pause)
	return true
}

// untried returns the most popular item u has not found sold out, or -1.
func (w *crowd) untried(u *user) int {
	for i := range w.items {
		if u.tried&(1<<i) == 0 {
			return i
		}
	}
	return -1
}

func (w *crowd) acknowledged() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

func (w *crowd) allLatencies() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return sortedLatencies(w.latencies)
}

// sortedLatencies merges the workers' latencies, sorted for percentiles.
func sortedLatencies(perWorker [][]time.Duration) []time.Duration {
	var all []time.Duration
	for _, l := range perWorker {
		all = append(all, l...)
	}
	slices.Sort(all)
	return all
}

// scheduler hands users to workers when their next press is due.
type scheduler struct {
	mu   sync.Mutex
	h    userHeap
	busy int // users handed out and not yet done
	wake chan struct{}
}

func newScheduler(users []*user) *scheduler {
	s := &scheduler{h: userHeap(slices.Clone(users)), wake: make(chan struct{}, 1)}
	heap.Init(&s.h)
	return s
}

// dispatch sends each user to work when due, until every user is done or
// ctx ends, then closes work.
func (s *scheduler) dispatch(ctx context.Context, work chan<- *user) {
	defer close(work)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.h.Len() == 0 {
			idle := s.busy == 0
			s.mu.Unlock()
			if idle {
				return
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		next := s.h[0]
		if wait := time.Until(next.at); wait > 0 {
			s.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-s.wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		heap.Pop(&s.h)
		s.busy++
		s.mu.Unlock()
		select {
		case work <- next:
		case <-ctx.Done():
			return
		}
	}
}

// done takes back a user from a worker, to press again at u.at if again.
func (s *scheduler) done(u *user, again bool) {
	s.mu.Lock()
	s.busy--
	if again {
		heap.Push(&s.h, u)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// userHeap orders users by their next press.
type userHeap []*user

func (h userHeap) Len() int           { return len(h) }
func (h userHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h userHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *userHeap) Push(x any)        { *h = append(*h, x.(*user)) }
func (h *userHeap) Pop() any {
	old := *h
	u := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return u
}
