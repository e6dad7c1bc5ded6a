package demo

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/cmd/internal/localcluster"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// workload is what one kind of event (the flash sale, the card collect)
// gives the machinery both share: the live view, the monitors, chaos and
// the summary.
type workload interface {
	// bars reads from the store what the stock bars show (stale reads).
	bars(ctx context.Context) []itemView
	// progress is the crowd's progress now.
	progress() progress
	// stages are the funnel stages the event's calls pass.
	stages() []localcluster.FunnelStage
	// latencies are the calls' latencies so far, sorted.
	latencies() []time.Duration
	// summaryHead prints the summary's first part: the crowd, the stock,
	// the answers.
	summaryHead(p func(format string, args ...any), ended time.Duration)
	// watchEmpty has f called with a bar's position when the crowd first
	// finds that bar empty (a SOLD_OUT or POOL_EMPTY answer), from the
	// crowd's goroutines; it is called before the crowd runs.
	watchEmpty(f func(bar int))
}

// progress is a crowd's progress, as the view and chaos read it.
type progress struct {
	arrived, done int64
	calls         int64   // calls the users made: presses, draws and redemptions
	counts        []tally // what the rates count: claims granted; draws, redemptions
	given         float64 // share of the stock given out so far, 0 to 1
}

// tally is a named count: "granted" 2,480 ("claims granted" in a
// sentence).
type tally struct {
	name, noun string
	n          int64
}

// liveRun is one run of a demo event: the crowd (driven by the caller),
// the live view, the monitors of the store and the front doors, and chaos.
type liveRun struct {
	cfg      Config
	cl       *localcluster.Cluster
	client   *client.Client
	work     workload
	kind     string // "sale" or "event", as the viewer reads it
	campaign string
	callName string // what the users' calls are called: "presses", "calls"
	callOne  string // and one of them: "press", "draw or redemption"
	latency  string // what the latency line measures: "claim", "card call"
	open     time.Time

	mu         sync.Mutex
	leaderID   string
	leaderReg  string
	killedAt   time.Time // when chaos killed the leader; zero once a new one is reported
	itemsNow   []itemView
	funnel     funnelCounts
	gauges     []doorGauges
	events     []event
	lastRate   rateSample
	rate       float64
	countRates []float64
	chaosNotes []string // the summary's account of the chaos
	ended      time.Duration
	screen     *screen
}

type rateSample struct {
	at       time.Time
	attempts uint64
	counts   []int64
}

// run calls drive (the crowd) from the opening until it returns or the
// time bound, while the display, the monitors and the chaos run beside it.
func (s *liveRun) run(ctx context.Context, drive func(ctx context.Context)) {
	crowdCtx, stopCrowd := context.WithDeadline(ctx, s.open.Add(s.cfg.Duration))
	defer stopCrowd()
	s.itemsNow = s.work.bars(ctx)
	s.watchEmpty()
	monitorCtx, stopMonitors := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.pollItems(monitorCtx) })
	wg.Go(func() { s.pollLeader(monitorCtx) })
	wg.Go(func() { s.pollFunnel(monitorCtx) })
	wg.Go(func() { s.display(monitorCtx) })
	if s.cfg.Chaos {
		chaos := &chaosRun{s: s}
		wg.Go(func() { chaos.run(crowdCtx, ctx) })
	}
	sleepUntil(crowdCtx, s.open)
	drive(crowdCtx)
	s.mu.Lock()
	s.ended = time.Since(s.open)
	s.mu.Unlock()
	stopCrowd()
	s.event("the crowd is done")
	stopMonitors()
	wg.Wait()
	s.refreshFunnel(ctx) // the final counts
	s.pollItemsOnce(ctx)
	s.draw(true)
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

// event records something for the viewer, at the time it is recorded;
// plain output prints it at once. Stamped and printed under the lock,
// events are printed in time order: a source that learns of something late
// (the stock poll) tells it when it learns it, and the crowd tells a
// sell-out at its first SOLD_OUT answer (watchEmpty).
func (s *liveRun) event(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventLocked(text)
}

func (s *liveRun) eventLocked(text string) {
	at := max(0, time.Since(s.open))
	s.events = append(s.events, event{at: at, text: text})
	if !s.cfg.Live {
		fmt.Fprintf(s.cfg.Out, "%5.1fs  %s\n", at.Seconds(), text)
	}
}

// watchEmpty has the crowd tell the viewer when it first finds a bar
// empty.
func (s *liveRun) watchEmpty() {
	s.work.watchEmpty(func(bar int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.emptiedLocked(bar)
	})
}

// emptiedLocked tells the viewer that a bar ran out, once.
func (s *liveRun) emptiedLocked(bar int) {
	if bar < 0 || bar >= len(s.itemsNow) || s.itemsNow[bar].reported {
		return
	}
	s.itemsNow[bar].reported = true
	s.eventLocked(s.itemsNow[bar].name + " " + s.itemsNow[bar].emptyWord())
}

// pollItems reads the stock bars from the store.
func (s *liveRun) pollItems(ctx context.Context) {
	for {
		s.pollItemsOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pollInterval):
		}
	}
}

// pollItemsOnce refreshes the bars and tells the viewer when one runs out
// that the crowd has not told of (a bar it does not watch, or one the
// store emptied first). A bar the store did not answer for keeps its last
// value.
func (s *liveRun) pollItemsOnce(ctx context.Context) {
	bars := s.work.bars(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range bars {
		if i >= len(s.itemsNow) {
			break
		}
		was := s.itemsNow[i]
		if !b.known {
			b.available, b.known = was.available, was.known
		}
		if b.soldOutAt == 0 {
			b.soldOutAt = was.soldOutAt
		}
		if b.soldOutAt == 0 && b.known && b.available == 0 {
			b.soldOutAt = max(time.Since(s.open), 1)
		}
		b.reported = was.reported
		s.itemsNow[i] = b
		if b.soldOutAt > 0 {
			s.emptiedLocked(i)
		}
	}
}

// pollLeader follows the store leader and tells the viewer when it
// changes.
func (s *liveRun) pollLeader(ctx context.Context) {
	for {
		rctx, cancel := context.WithTimeout(ctx, leaderInterval)
		st, err := s.cl.Store.ClusterStatus(rctx, &pb.ClusterStatusRequest{})
		cancel()
		if err == nil {
			s.leaderIs(st.GetLeaderId(), st.GetLeaderRegion())
		} else if ctx.Err() == nil {
			s.leaderIs("", "")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(leaderInterval / 2):
		}
	}
}

func (s *liveRun) leaderIs(id, region string) {
	s.mu.Lock()
	prev, killed := s.leaderID, s.killedAt
	s.leaderID, s.leaderReg = id, region
	if id != "" && id != prev {
		s.killedAt = time.Time{}
	}
	s.mu.Unlock()
	switch {
	case id == prev:
	case id == "":
		s.event(fmt.Sprintf("no leader: %s is gone, the others hold an election", prev))
	case !killed.IsZero():
		s.event(fmt.Sprintf("%s (%s) elected leader, %.1fs after the kill", id, region, time.Since(killed).Seconds()))
	case prev == "":
		s.event(fmt.Sprintf("store leader is %s (%s)", id, region))
	default:
		s.event(fmt.Sprintf("leadership moved from %s to %s (%s)", prev, id, region))
	}
}

// pollFunnel scrapes the front doors' funnel counters.
func (s *liveRun) pollFunnel(ctx context.Context) {
	for {
		s.refreshFunnel(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *liveRun) refreshFunnel(ctx context.Context) {
	f, g, err := scrapeDoors(ctx, s.cl.DoorHTTPAddrs())
	if err != nil && len(g) == 0 {
		return
	}
	s.mu.Lock()
	s.funnel, s.gauges = f, g
	s.mu.Unlock()
}

// display draws a frame every frameInterval on a terminal, or a line
// every lineInterval otherwise, until ctx ends.
func (s *liveRun) display(ctx context.Context) {
	every := lineInterval
	if s.cfg.Live {
		every = frameInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.draw(false)
		}
	}
}

// draw shows the current view: a frame, or a plain line. final is the
// last one, after the crowd.
func (s *liveRun) draw(final bool) {
	v := s.view(final)
	if !s.cfg.Live {
		if !final {
			fmt.Fprintln(s.cfg.Out, plainLine(v))
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.screen == nil {
		s.screen = &screen{w: s.cfg.Out}
	}
	s.screen.draw(render(v))
	if final {
		s.screen.close()
	}
}
