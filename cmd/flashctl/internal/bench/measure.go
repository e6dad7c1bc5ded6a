package bench

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// sampleInterval is how often a run reads the servers' counters and the
// stock left: once per latency window.
const sampleInterval = windowLength

// sample is what the servers said at one moment of a run.
type sample struct {
	at     time.Time
	funnel localcluster.Funnel // nil: not read
	stock  *int64
}

// measure makes one run: it drives the load at sys, watches the servers
// meanwhile (funnel, stock, the sell-out, profiles), and adds the run's
// report to b.rep.
func (b *bench) measure(ctx context.Context, spec runSpec, sys *system) (*RunReport, error) {
	cfg := b.cfg
	b.runs++
	r := &RunReport{
		Name: spec.name, Title: spec.title, Server: sys.server, Workload: cfg.Workload, Mode: modeClosed,
		Concurrency: spec.load.concurrency, Items: spec.items, Users: cfg.Users,
		WarmupSeconds: spec.load.warmup.Seconds(), DurationSeconds: spec.load.duration.Seconds(),
	}
	if spec.load.rate > 0 {
		r.Mode, r.Rate, r.InFlightMax, r.Concurrency = modeOpen, spec.load.rate, spec.load.inFlightMax, 0
	}
	w := b.workload(spec.name, spec.items)

	// The counters at the start of the measurement: read once the
	// warm-up is over, or before the first claim when there is none.
	var cpuStart map[string]float64
	var storeStart storeCounters
	storeStartOK := false
	var funnelStart localcluster.Funnel
	baseline := func(ctx context.Context) {
		cpuStart = sys.cpu()
		if sys.storeTraffic != nil {
			storeStart, storeStartOK = sys.storeTraffic(ctx)
		}
		if sys.funnel != nil {
			funnelStart = sys.funnel(ctx)
		}
	}
	if spec.load.warmup <= 0 {
		baseline(ctx)
	}
	start := time.Now().Add(spec.load.warmup) // the measurement starts after the warm-up
	rec := newRecorder(start)

	// The monitors read the servers while the load runs; the profiles
	// run for the measured duration, from the end of the warm-up.
	monitorCtx, stopMonitors := context.WithCancel(ctx)
	defer stopMonitors()
	var monitors, profiling sync.WaitGroup
	var samples []sample
	monitors.Go(func() {
		if !sleepUntil(monitorCtx, start) {
			return
		}
		if spec.load.warmup > 0 {
			baseline(monitorCtx)
		}
		samples = b.watch(monitorCtx, sys, spec.items, start)
	})
	var after *afterSellout
	if cfg.sellout() && !sys.noStock {
		after = &afterSellout{}
		monitors.Go(func() { after.watch(monitorCtx, rec, sys) })
	}
	var profiles, profileErrs []string
	if cfg.ProfileDir != "" {
		profiling.Go(func() {
			if sleepUntil(ctx, start) {
				profiles, profileErrs = profile(ctx, cfg.ProfileDir, spec.name, sys.profiles, spec.load.duration)
			}
		})
	}
	stopProgress := b.showProgress(spec, rec)

	d := drive(ctx, sys.target, w, spec.load, rec)

	stopProgress()
	end := time.Now()
	stopMonitors()
	monitors.Wait()
	cpuEnd := sys.cpu()
	var funnelEnd localcluster.Funnel
	if funnelStart != nil {
		funnelEnd = sys.funnel(ctx)
	}
	final := b.sampleNow(ctx, sys, spec.items, end)
	if storeStartOK {
		if storeEnd, ok := sys.storeTraffic(ctx); ok && storeEnd.batches > storeStart.batches {
			n, claims := storeEnd.batches-storeStart.batches, storeEnd.claims-storeStart.claims
			r.Store = &StoreFigures{Batches: n, Claims: claims, ClaimsPerBatch: round3(claims / n)}
		}
	}
	var afterEnd afterMark
	if after != nil {
		afterEnd = after.mark(ctx, rec, sys, end)
	}
	profiling.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	r.fill(rec.snapshot(), d)
	r.Profiles = profiles
	b.rep.Notes = append(b.rep.Notes, profileErrs...)
	samples = append(samples, final)
	r.addSamples(samples)
	if funnelEnd != nil {
		r.Funnel = funnelRows(funnelEnd.Minus(funnelStart))
	}
	r.CPU, r.CPUPerAnswer = map[string]float64{}, map[string]float64{}
	for group, v := range cpuEnd {
		used := v - cpuStart[group]
		if cpuStart == nil { // the run ended within its warm-up
			used = 0
		}
		r.CPU[group] = round3(used)
		if r.Answered > 0 {
			r.CPUPerAnswer[group] = math.Round(used * 1e6 / float64(r.Answered))
			r.CPUTotal += r.CPUPerAnswer[group]
		}
	}
	if sys.clientStats != nil {
		st := sys.clientStats()
		r.Client = &ClientStats{Calls: st.Calls, Attempts: st.Attempts, Retries: st.Retries, Dropped: st.Dropped, BudgetExhausted: st.BudgetExhausted}
	}
	if after != nil {
		r.Sellout = after.report(rec, afterEnd, cfg.Stock*int64(len(spec.items)), sys)
	}
	b.rep.Runs = append(b.rep.Runs, r)
	b.progressf("%s", runLine(r))
	return r, nil
}

// watch reads the servers every sampleInterval from start until ctx ends.
func (b *bench) watch(ctx context.Context, sys *system, items []string, start time.Time) []sample {
	out := []sample{b.sampleNow(ctx, sys, items, start)}
	for k := 1; ; k++ {
		if !sleepUntil(ctx, start.Add(time.Duration(k)*sampleInterval)) {
			return out
		}
		out = append(out, b.sampleNow(ctx, sys, items, time.Now()))
	}
}

func (b *bench) sampleNow(ctx context.Context, sys *system, items []string, at time.Time) sample {
	s := sample{at: at}
	if sys.funnel != nil {
		s.funnel = sys.funnel(ctx)
	}
	if sys.stock != nil {
		if n, ok := sys.stock(ctx, items); ok {
			s.stock = &n
		}
	}
	return s
}

// addSamples puts the servers' readings into the series: window i (the
// i-th second after the warm-up) gets what changed between the readings
// nearest its start and its end.
func (r *RunReport) addSamples(samples []sample) {
	start := time.Time{}
	if len(samples) > 0 {
		start = samples[0].at
		r.StockAtStart = samples[0].stock
	}
	at := func(i int) *sample { // the reading nearest start + i seconds
		best := -1
		for k := range samples {
			if best < 0 || absDuration(samples[k].at.Sub(start)-time.Duration(i)*sampleInterval) < absDuration(samples[best].at.Sub(start)-time.Duration(i)*sampleInterval) {
				best = k
			}
		}
		if best < 0 {
			return nil
		}
		return &samples[best]
	}
	for i := range r.Series {
		from, to := at(i), at(i+1)
		if from == nil || to == nil || from == to {
			continue
		}
		if from.funnel != nil && to.funnel != nil {
			d := to.funnel.Minus(from.funnel)
			r.Series[i].Stopped = map[string]float64{}
			for _, s := range localcluster.FunnelStages {
				if n := d.Stopped(s.Name); n > 0 {
					r.Series[i].Stopped[s.Name] = n
				}
			}
		}
		r.Series[i].Stock = to.stock
	}
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// afterSellout measures the phase after the sell-out: from selloutSettle
// after the first SOLD_OUT answer to the end of the run.
type afterSellout struct {
	start afterMark
}

// afterMark is the counters at one end of the phase.
type afterMark struct {
	ok        bool
	at        time.Time
	answered  int64
	soldOut   int64
	serverCPU float64
	store     storeCounters
	storeOK   bool
}

// watch waits for the first SOLD_OUT answer, then for the batches in
// flight to come back, and marks the start of the phase.
func (a *afterSellout) watch(ctx context.Context, rec *recorder, sys *system) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for rec.firstSoldOut.Load() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	if !sleepUntil(ctx, rec.start.Add(time.Duration(rec.firstSoldOut.Load())+selloutSettle)) {
		return
	}
	a.start = a.mark(ctx, rec, sys, time.Now())
}

func (a *afterSellout) mark(ctx context.Context, rec *recorder, sys *system, at time.Time) afterMark {
	m := afterMark{ok: true, at: at, answered: rec.answered.Load(), soldOut: rec.soldOut.Load()}
	cpu := sys.cpu()
	for _, g := range sys.serverCPU {
		m.serverCPU += cpu[g]
	}
	if sys.storeTraffic != nil {
		m.store, m.storeOK = sys.storeTraffic(ctx)
	}
	return m
}

// report is the sell-out's figures; end is the mark at the end of the run.
func (a *afterSellout) report(rec *recorder, end afterMark, stock int64, sys *system) *Sellout {
	s := &Sellout{Stock: stock, Granted: rec.granted.Load()}
	if v := rec.lastGrant.Load(); v > 0 {
		s.SoldOutSeconds = round3(time.Duration(v).Seconds())
	}
	if v := rec.firstSoldOut.Load(); v > 0 {
		s.FirstSoldOutSeconds = round3(time.Duration(v).Seconds())
	}
	if !a.start.ok || !end.ok || !end.at.After(a.start.at) {
		return s
	}
	secs := end.at.Sub(a.start.at).Seconds()
	p := &Refusal{
		Seconds: round3(secs), Answers: end.answered - a.start.answered, Rejections: end.soldOut - a.start.soldOut,
		ServerCPUSeconds: round3(end.serverCPU - a.start.serverCPU), StoreBatches: -1,
	}
	p.PerSecond = math.Round(float64(p.Rejections) / secs)
	if cpu := end.serverCPU - a.start.serverCPU; cpu > 0 {
		p.PerServerCore = math.Round(float64(p.Rejections) / cpu)
	}
	if a.start.storeOK && end.storeOK {
		p.StoreBatches = end.store.batches - a.start.store.batches
	}
	s.After = p
	return s
}

// sleepUntil sleeps until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
