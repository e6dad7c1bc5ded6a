package bench

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/client"
)

// claimTimeout bounds one claim, the client library's retries included:
// the load stops at the end of the run, and what is in flight then ends
// within it.
const claimTimeout = 10 * time.Second

// workerContext is a load worker's own child of the run's ctx, for the
// contexts of its claims to derive from: thousands of workers deriving a
// context per claim from the run's ctx itself all take its one lock to
// register and unregister, and that contention was a fifth of the load
// generator's CPU at 1,024 in flight.
func workerContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

// Request is one claim the load sends.
type Request struct {
	Seq       int64 // its place in the run, from 0
	UserIndex int64 // the user's number, from 0
	User      string
	Item      string // "" in the cards workload
}

// Target answers claims: flashd's front doors, the echo baseline, Redis.
// Claim returns nil for a grant, or an error that reasonOf names.
type Target interface {
	Claim(ctx context.Context, r Request) error
}

// TargetFunc is a function that is a Target.
type TargetFunc func(ctx context.Context, r Request) error

// Claim calls f.
func (f TargetFunc) Claim(ctx context.Context, r Request) error { return f(ctx, r) }

// reasonOf names an answer: "granted", the server's reason in lower case
// ("sold_out", "rate_limited", "overloaded", ...), "timeout", or the gRPC
// code ("unavailable"), "other" for anything else.
func reasonOf(err error) string {
	switch {
	case err == nil:
		return reasonGranted
	case errors.As(err, new(answered)):
		return err.Error()
	case client.Reason(err) != "":
		return strings.ToLower(client.Reason(err))
	case errors.Is(err, client.ErrSoldOut):
		return reasonSoldOut
	case errors.Is(err, client.ErrLimitReached):
		return reasonLimit
	case errors.Is(err, context.DeadlineExceeded):
		return reasonTimeout
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown && st.Code() != codes.OK {
		return strings.ToLower(st.Code().String())
	}
	return reasonOther
}

// workload makes the requests of a run: request k goes to an item and
// comes from a user, both derived from k alone.
type workload struct {
	userPrefix string   // unique per run, so users never carry over
	users      int64    // distinct users; 0: every request a new user
	items      []string // the items claimed, one for a hot item (none: cards)
}

func (w *workload) request(k int64) Request {
	u := k
	if w.users > 0 {
		u = k % w.users
	}
	var item string
	switch len(w.items) {
	case 0:
	case 1:
		item = w.items[0]
	default:
		item = w.items[spread(uint64(k))%uint64(len(w.items))]
	}
	b := make([]byte, 0, len(w.userPrefix)+12)
	b = append(b, w.userPrefix...)
	b = strconv.AppendInt(b, u, 36)
	return Request{Seq: k, UserIndex: u, User: string(b), Item: item}
}

// spread is splitmix64's finaliser: consecutive requests land on items
// as if drawn at random, the same way in every run.
func spread(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// load is how a run sends: closed loop (a fixed number of claims in
// flight, each sent when one is answered) or open loop (a fixed arrival
// rate, whatever the answers do).
type load struct {
	concurrency int           // closed loop: claims in flight
	rate        float64       // open loop: claims per second (0: closed loop)
	inFlightMax int           // open loop: claims in flight at most; more wait, and their wait counts
	warmup      time.Duration // sent, not recorded
	duration    time.Duration // measured, after the warm-up
	requestsMax int64         // bound on the claims sent, warm-up included
}

// driven is what a driver reports besides the recorder.
type driven struct {
	sent    int64         // claims sent
	unsent  int64         // open loop: due before the end but never sent (every slot in flight)
	lagMax  time.Duration // open loop: the latest a claim left after its intended time
	lagSum  time.Duration // open loop: the sum of those delays, for their mean
	elapsed time.Duration // from the end of the warm-up to the last answer
}

// drive sends the load to t, recording every answer in rec (whose start
// is the end of the warm-up), until the duration or the request bound is
// reached or ctx ends; it returns when every claim sent is answered.
func drive(ctx context.Context, t Target, w *workload, l load, rec *recorder) driven {
	if l.rate > 0 {
		return driveOpen(ctx, t, w, l, rec)
	}
	return driveClosed(ctx, t, w, l, rec)
}

// driveClosed keeps l.concurrency claims in flight: each worker sends a
// claim, waits for its answer, and sends the next. Latency is measured
// from the send: a closed loop cannot see the queueing it does not cause.
func driveClosed(ctx context.Context, t Target, w *workload, l load, rec *recorder) driven {
	end := rec.start.Add(l.duration)
	var next, sent atomic.Int64
	var wg sync.WaitGroup
	for range l.concurrency {
		wg.Go(func() {
			ctx, cancel := workerContext(ctx)
			defer cancel()
			for {
				now := time.Now()
				if !now.Before(end) || ctx.Err() != nil {
					return
				}
				k := next.Add(1) - 1
				if k >= l.requestsMax {
					return
				}
				sent.Add(1)
				callCtx, cancel := context.WithTimeout(ctx, claimTimeout)
				err := t.Claim(callCtx, w.request(k))
				cancel()
				done := time.Now()
				rec.record(done, done.Sub(now), reasonOf(err), err)
			}
		})
	}
	wg.Wait()
	return driven{sent: sent.Load(), elapsed: time.Since(rec.start)}
}

// job is one open-loop claim and when it was meant to leave.
type job struct {
	k        int64
	intended time.Time
}

// driveOpen sends claims at l.rate, claim k meant to leave at
// start + k/rate, by l.inFlightMax workers. Latency is measured from the
// intended time, not the actual send: when the target falls behind,
// claims wait for a free worker and that wait is part of their latency
// (no coordinated omission). Claims still waiting at the end are counted
// as unsent, never dropped silently.
func driveOpen(ctx context.Context, t Target, w *workload, l load, rec *recorder) driven {
	first := rec.start.Add(-l.warmup)
	end := rec.start.Add(l.duration)
	interval := time.Duration(float64(time.Second) / l.rate)
	jobs := make(chan job)
	var wg sync.WaitGroup
	serve := func(ctx context.Context, j job) {
		callCtx, cancel := context.WithTimeout(ctx, claimTimeout)
		err := t.Claim(callCtx, w.request(j.k))
		cancel()
		done := time.Now()
		rec.record(done, done.Sub(j.intended), reasonOf(err), err)
	}
	// Workers are started as the claims in flight need them, up to
	// inFlightMax: idle ones would cost the machine under test (their
	// stacks, scanned by every garbage collection).
	workers := 0
	hand := func(j job) bool {
		select {
		case jobs <- j: // an idle worker took it
			return true
		default:
		}
		if workers < l.inFlightMax {
			workers++
			wg.Go(func() {
				ctx, cancel := workerContext(ctx)
				defer cancel()
				serve(ctx, j)
				for j := range jobs {
					serve(ctx, j)
				}
			})
			return true
		}
		return false
	}
	var out driven
	stop := time.NewTimer(time.Until(end))
	defer stop.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
send:
	for k := int64(0); k < l.requestsMax; k++ {
		intended := first.Add(time.Duration(k) * interval)
		if !intended.Before(end) {
			break
		}
		if wait := time.Until(intended); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break send
			}
		}
		j := job{k: k, intended: intended}
		if !hand(j) {
			// Every worker is busy: wait for one, the wait counting
			// in this claim's latency.
			select {
			case jobs <- j:
			case <-stop.C:
				// Every worker was busy until the end: the claims due
				// from here to the end were never sent.
				due := min(l.requestsMax, int64((end.Sub(first)+interval-1)/interval))
				out.unsent = due - k
				break send
			case <-ctx.Done():
				break send
			}
		}
		lag := time.Since(intended)
		out.sent++
		out.lagMax = max(out.lagMax, lag)
		out.lagSum += lag
	}
	close(jobs)
	wg.Wait()
	out.elapsed = time.Since(rec.start)
	return out
}
