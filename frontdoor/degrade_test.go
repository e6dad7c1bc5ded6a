package frontdoor

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// L1: the adaptive limit shrinks under latency or queue strain, grows when
// the store has room, and holds in between.
func TestAdaptiveLimit(t *testing.T) {
	const base = 10 * time.Millisecond
	tests := []struct {
		name     string
		latency  time.Duration
		queued   int
		inFlight int
		want     string // "shrink", "grow", "hold"
	}{
		{"latency far above the baseline", 5 * base, 0, 1000, "shrink"},
		{"queue over the high-water mark", base, 1000, 1000, "shrink"},
		{"in the dead band", 3 * base / 2, 0, 1000, "hold"},
		{"close to the baseline, limit in use", base, 0, 1000, "grow"},
		{"close to the baseline, limit unused", base, 0, 10, "hold"},
		{"close to the baseline, claims queued", base, 100, 1000, "hold"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAdaptiveLimit(64, 4, 2000)
			a.value = 1000
			now := t0
			a.observe(base, 0, 0, now) // sets the baseline
			a.value = 1000
			before := a.value
			a.observe(tc.latency, tc.queued, tc.inFlight, now.Add(time.Second))
			got := "hold"
			switch {
			case a.value < before:
				got = "shrink"
			case a.value > before:
				got = "grow"
			}
			if got != tc.want {
				t.Fatalf("%s (limit %v -> %v), want %s", got, before, a.value, tc.want)
			}
		})
	}
}

// The limit stays within [one batch, queue + batches in flight], changes
// at most once per baseline latency, and the baseline recovers when the
// store gets slower for good.
func TestAdaptiveLimitBoundsAndPace(t *testing.T) {
	a := newAdaptiveLimit(64, 4, 2000)
	now := t0
	a.observe(10*time.Millisecond, 0, 0, now)
	for i := range 1000 {
		now = now.Add(20 * time.Millisecond)
		a.observe(time.Second, 0, 0, now)
		_ = i
	}
	if lim, _ := a.state(); lim != 64 {
		t.Fatalf("limit %d after long strain, want the floor 64", lim)
	}
	// Many observations within one baseline change it once.
	b := newAdaptiveLimit(64, 4, 2000)
	b.observe(100*time.Millisecond, 0, 0, t0)
	start := b.value
	for range 50 {
		b.observe(time.Second, 0, 0, t0.Add(150*time.Millisecond))
	}
	if want := start * limitShrinkFactor; b.value != want {
		t.Fatalf("limit %v, want one shrink to %v", b.value, want)
	}
	// The baseline is the minimum of the last one or two windows, so it
	// follows a store that became slower for good.
	c := newAdaptiveLimit(64, 4, 2000)
	c.observe(time.Millisecond, 0, 0, t0)
	for i := range 3 {
		c.observe(50*time.Millisecond, 0, 0, t0.Add(time.Duration(i+1)*(baselineWindow+time.Second)))
	}
	if _, base := c.state(); base != 50*time.Millisecond {
		t.Fatalf("baseline %v, want 50ms", base)
	}
}

// Automatic degradation moves only after runs of consistent ticks, and
// more slowly down than up.
func TestAutoLevelHysteresis(t *testing.T) {
	type step struct {
		pressure bool
		shed     float64
		ticks    int
		level    uint32
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"one pressured tick changes nothing", []step{{true, 0, 1, 0}, {false, 0, 1, 0}, {true, 0, 1, 0}}},
		{"two pressured ticks engage L1", []step{{true, 0, autoUpTicks, 1}}},
		{"L1 holds through short quiet", []step{{true, 0, autoUpTicks, 1}, {false, 0, autoDownTicks - 1, 1}, {true, 0.1, 1, 1}, {false, 0, autoDownTicks - 1, 1}}},
		{"L1 ends after a long quiet", []step{{true, 0, autoUpTicks, 1}, {false, 0, autoDownTicks, 0}}},
		{"L1 shedding for seconds raises L2", []step{{true, 0, autoUpTicks, 1}, {true, 0.8, autoL2Ticks - 1, 1}, {true, 0.8, 1, 2}}},
		{"L2 lowers its drop, then returns to L1", []step{{true, 0, autoUpTicks, 1}, {true, 0.6, autoL2Ticks, 2}, {false, 0, 11, 2}, {false, 0, 1, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a autoLevel
			for i, s := range tc.steps {
				for range s.ticks {
					a.tick(s.pressure, s.shed)
				}
				if a.level != s.level {
					t.Fatalf("step %d: level %d, want %d", i, a.level, s.level)
				}
			}
		})
	}
	// Oscillating pressure, one tick on, one off, never engages L1.
	var a autoLevel
	for i := range 1000 {
		a.tick(i%2 == 0, 0)
		if a.level != 0 {
			t.Fatalf("engaged on alternating pressure at tick %d", i)
		}
	}
}

func TestEffectiveDegradation(t *testing.T) {
	tests := []struct {
		name string
		cfg  FunnelConfig
		auto autoLevel
		want degradation
	}{
		{"admin level, auto off", FunnelConfig{DegradeLevel: 2, DropFraction: 0.3}, autoLevel{level: 1}, degradation{2, 0.3}},
		{"auto below the admin's floor", FunnelConfig{DegradeLevel: 1, DegradeAuto: true}, autoLevel{level: 0}, degradation{1, 0}},
		{"auto above the floor", FunnelConfig{DegradeAuto: true}, autoLevel{level: 1}, degradation{1, 0}},
		{"auto L2 uses its own drop", FunnelConfig{DegradeAuto: true}, autoLevel{level: 2, drop: 0.4}, degradation{2, 0.4}},
		{"auto L2 uses the admin's drop if set", FunnelConfig{DegradeAuto: true, DropFraction: 0.2}, autoLevel{level: 2, drop: 0.4}, degradation{2, 0.2}},
		{"no drop below L2", FunnelConfig{DegradeLevel: 1, DropFraction: 0.5}, autoLevel{}, degradation{1, 0}},
		{"L3", FunnelConfig{DegradeLevel: 3, DropFraction: 0.5}, autoLevel{}, degradation{3, 0.5}},
	}
	for _, tc := range tests {
		if got := effectiveDegradation(tc.cfg, tc.auto); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// L1 through the door: with the adaptive limit enforced, claims over it
// are refused at once with a retry hint.
func TestAdaptiveLimitShedsThroughDoor(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 100, 1)
	d, _ := newTestDoor(t, store, func(c *Config) { c.BatchMax = 1; c.QueueMax = 8 })
	openCampaign(d, 0, 0, 1)
	d.applyConfig(FunnelConfig{Version: 1, DegradeLevel: 1})
	if !d.coalescer.enforce.Load() {
		t.Fatal("L1 not enforced")
	}
	d.coalescer.limit.limit.Store(0)
	_, err := d.Claim(userCtx("a"), claimReq("r"))
	wantRefusal(t, err, codes.ResourceExhausted, reasonOverloaded)
	if retryDelay(err) <= 0 || store.batchCount() != 0 {
		t.Fatal("shed claim has no hint or reached the store")
	}
	d.applyConfig(FunnelConfig{Version: 2})
	if d.coalescer.enforce.Load() {
		t.Fatal("L0 still enforces")
	}
	if _, err := d.Claim(userCtx("a"), claimReq("r")); err != nil {
		t.Fatal(err)
	}
}

// A configuration older than the one in force is ignored (the watch stream
// and heartbeats both carry it, in any order).
func TestConfigVersions(t *testing.T) {
	d, _ := newTestDoor(t, newFakeStore(), nil)
	d.applyConfig(FunnelConfig{Version: 5, PerUserRate: 3})
	d.applyConfig(FunnelConfig{Version: 4, PerUserRate: 9})
	if got := d.funnel.Load().cfg.PerUserRate; got != 3 {
		t.Fatalf("per-user rate %v after an older config, want 3", got)
	}
	d.applyConfig(FunnelConfig{Version: 6, DegradeLevel: 2, DropFraction: 0.5})
	if deg := d.funnel.Load().deg; deg != (degradation{2, 0.5}) {
		t.Fatalf("degradation %+v", deg)
	}
}

// Automatic degradation through the door: a store that slows down under a
// crowd engages L1 (the adaptive limit refuses claims); once the crowd is
// gone the door returns to L0, but only after a long quiet.
func TestAutoDegradationThroughDoor(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 1_000_000, 1)
	d, clock := newTestDoor(t, store, func(c *Config) { c.BatchMax = 4; c.BatchesInFlight = 1; c.QueueMax = 256 })
	openCampaign(d, 0, 0, 1)
	d.applyConfig(FunnelConfig{Version: 1, DegradeAuto: true})
	tick := func() { d.controlTick(); clock.add(autoTick) }
	for i := range 10 { // a quick store sets the baseline
		if _, err := d.Claim(userCtx(userName(i)), claimReq("")); err != nil {
			t.Fatal(err)
		}
	}
	tick()
	if lvl := d.funnel.Load().deg.level; lvl != 0 {
		t.Fatalf("level %d with a quick store", lvl)
	}

	store.mu.Lock()
	store.delay = 20 * time.Millisecond
	store.mu.Unlock()
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() { defer wg.Done(); d.Claim(userCtx(userName(100+i)), claimReq("")) }()
	}
	for range autoUpTicks {
		time.Sleep(60 * time.Millisecond) // a few slow batches answer
		tick()
	}
	if deg := d.funnel.Load().deg; deg.level != 1 || !d.coalescer.enforce.Load() {
		t.Fatalf("degradation %+v under strain, want level 1 enforced", deg)
	}
	wg.Wait()
	tick() // the tick in which the crowd left

	for i := range autoDownTicks - 1 {
		tick()
		if lvl := d.funnel.Load().deg.level; lvl != 1 {
			t.Fatalf("left L1 after %d quiet ticks", i+1)
		}
	}
	tick()
	if deg := d.funnel.Load().deg; deg.level != 0 || d.coalescer.enforce.Load() {
		t.Fatalf("degradation %+v after %d quiet ticks, want level 0", deg, autoDownTicks)
	}
}
