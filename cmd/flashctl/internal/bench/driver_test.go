package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/client"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// slowServer answers one claim at a time, each after service: a server
// with a capacity of 1/service claims per second.
type slowServer struct {
	mu      sync.Mutex
	service time.Duration
	served  atomic.Int64
}

func (s *slowServer) Claim(ctx context.Context, _ Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	time.Sleep(s.service)
	s.served.Add(1)
	return nil
}

// TestOpenLoopShowsQueueing offers a server twice the rate it can serve.
// Measured from the intended send time, the latency grows with the queue:
// the last claims of the run wait for every claim before them. A driver
// that measured from the actual send (or a closed loop) would report
// about one service time.
func TestOpenLoopShowsQueueing(t *testing.T) {
	const service = 20 * time.Millisecond
	for _, inFlight := range []int{1, 1000} { // queued in the driver, or at the server
		t.Run(fmt.Sprintf("in-flight-%d", inFlight), func(t *testing.T) {
			srv := &slowServer{service: service}
			w := &workload{userPrefix: "u", items: []string{"gift"}}
			l := load{rate: 100, inFlightMax: inFlight, duration: 400 * time.Millisecond, requestsMax: 1000}
			rec := newRecorder(time.Now())
			d := drive(context.Background(), srv, w, l, rec)
			got := rec.snapshot()
			if d.sent+d.unsent != 40 {
				t.Fatalf("sent %d and unsent %d, want 40 claims due in 400ms at 100/s", d.sent, d.unsent)
			}
			if got.all.TotalCount() != d.sent || srv.served.Load() != d.sent {
				t.Fatalf("recorded %d answers, served %d, sent %d", got.all.TotalCount(), srv.served.Load(), d.sent)
			}
			// Claim k is due at k*10ms and answered at (k+1)*20ms at the
			// earliest: the last one sent waits about 20ms per claim before it.
			k := d.sent - 1
			least := time.Duration(k+1)*service - time.Duration(k)*10*time.Millisecond
			if maxLatency := time.Duration(got.all.Max()) * time.Microsecond; maxLatency < least {
				t.Errorf("max latency %v, want at least %v (queueing hidden)", maxLatency, least)
			}
			// The median claim, j, waits in the same way for the j before
			// it. Half that bound leaves room for an order perturbed at
			// the server, and still well above the one service time a
			// driver hiding the queue would report. (It was 5 service
			// times, whatever was sent: on a loaded machine each sleep of
			// the server takes longer, fewer claims are sent in the run,
			// and the queue, and so the median, is shorter: 96ms, seen.)
			j := (d.sent - 1) / 2
			median := (time.Duration(j+1)*service - time.Duration(j)*10*time.Millisecond) / 2
			if p50 := time.Duration(got.all.ValueAtQuantile(50)) * time.Microsecond; p50 < median {
				t.Errorf("p50 %v of %d sent: the queue is not in the latency (service time %v)", p50, d.sent, service)
			}
		})
	}
}

// TestOpenLoopCountsUnsent: a server that never answers within the run
// leaves every claim after the first inFlightMax unsent, and the driver
// says so.
func TestOpenLoopCountsUnsent(t *testing.T) {
	release := make(chan struct{})
	stuck := TargetFunc(func(ctx context.Context, _ Request) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	l := load{rate: 200, inFlightMax: 5, duration: 200 * time.Millisecond, requestsMax: 1000}
	rec := newRecorder(time.Now())
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	d := drive(context.Background(), stuck, &workload{userPrefix: "u", items: []string{"gift"}}, l, rec)
	if d.sent != 5 || d.unsent != 35 {
		t.Errorf("sent %d unsent %d, want 5 and 35 (40 due)", d.sent, d.unsent)
	}
}

// TestClosedLoopKeepsConcurrency: a closed loop has exactly concurrency
// claims in flight and stops at the request bound.
func TestClosedLoopKeepsConcurrency(t *testing.T) {
	var inFlight, most atomic.Int64
	target := TargetFunc(func(ctx context.Context, _ Request) error {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		return nil
	})
	rec := newRecorder(time.Now())
	d := drive(context.Background(), target, &workload{userPrefix: "u", items: []string{"gift"}},
		load{concurrency: 8, duration: time.Minute, requestsMax: 400}, rec)
	if d.sent != 400 || rec.answered.Load() != 400 {
		t.Errorf("sent %d answered %d, want 400", d.sent, rec.answered.Load())
	}
	if most.Load() != 8 {
		t.Errorf("at most %d in flight, want 8", most.Load())
	}
}

func TestWarmupIsNotRecorded(t *testing.T) {
	rec := newRecorder(time.Now().Add(time.Hour))
	rec.record(time.Now(), time.Millisecond, reasonGranted, nil)
	if got := rec.snapshot(); got.all.TotalCount() != 0 || got.warmup != 1 || rec.lastGrant.Load() != 1 {
		t.Errorf("warm-up answer recorded: %d answers, %d warm-up", got.all.TotalCount(), got.warmup)
	}
}

func TestWorkloadRequests(t *testing.T) {
	w := &workload{userPrefix: "r1-", users: 3, items: []string{"a", "b", "c", "d"}}
	seen := map[string]bool{}
	items := map[string]int{}
	for k := range int64(4000) {
		r := w.request(k)
		seen[r.User] = true
		items[r.Item]++
	}
	if len(seen) != 3 {
		t.Errorf("%d users, want 3", len(seen))
	}
	for _, it := range w.items {
		if items[it] < 800 || items[it] > 1200 {
			t.Errorf("item %s got %d of 4000 requests, want about 1000", it, items[it])
		}
	}
	fresh := &workload{userPrefix: "r2-", items: []string{"hot"}}
	if a, b := fresh.request(1), fresh.request(2); a.User == b.User || a.Item != "hot" {
		t.Errorf("requests %+v and %+v: want distinct users on the hot item", a, b)
	}
}

func TestReasonOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "granted"},
		{fmt.Errorf("redis: %w", client.ErrSoldOut), "sold_out"},
		{fmt.Errorf("redis: %w", client.ErrLimitReached), "limit_reached"},
		{context.DeadlineExceeded, "timeout"},
		{status.Error(codes.Unavailable, "down"), "unavailable"},
		{errors.New("boom"), "other"},
	} {
		if got := reasonOf(c.err); got != c.want {
			t.Errorf("reasonOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
