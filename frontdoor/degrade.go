package frontdoor

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// The adaptive limit (degradation level 1) bounds how many claims may be in
// the coalescer at once (queued or in a batch being applied). It follows
// the store's batch latency and the coalescer's queue depth, in the spirit
// of TCP Vegas: latency close to the best seen lately means the store has
// room, so the limit grows; latency well above it, or claims piling up in
// the queue, means the store is saturated, so the limit shrinks. Between
// the two thresholds nothing changes: that dead band is the hysteresis
// that keeps the limit from oscillating around one latency value.
const (
	latencyGrowBelow   = 1.25 // x baseline: room to grow
	latencyShrinkAbove = 2.0  // x baseline: saturated
	limitShrinkFactor  = 0.9
	baselineWindow     = 10 * time.Second // the baseline is the minimum over 10-20s
)

type adaptiveLimit struct {
	limit atomic.Int64 // claims; read on the hot path

	mu          sync.Mutex
	min, max    float64
	value       float64
	lowWater    int // queue depth under which the limit may grow
	highWater   int // queue depth over which it shrinks
	minCur      time.Duration
	minPrev     time.Duration
	windowStart time.Time
	lastChange  time.Time
	pressedAt   time.Time // the latest observation that showed strain
}

// newAdaptiveLimit starts at the largest limit: it only engages when the
// store shows strain.
func newAdaptiveLimit(batchMax, batchesInFlight, queueMax int) *adaptiveLimit {
	a := &adaptiveLimit{
		min:       float64(batchMax),
		max:       float64(queueMax + batchMax*batchesInFlight),
		lowWater:  max(1, batchMax/2),
		highWater: 2 * batchMax,
	}
	a.value = a.max
	a.limit.Store(int64(a.value))
	return a
}

// baseline is the least batch latency over the last one or two windows.
func (a *adaptiveLimit) baselineLocked() time.Duration {
	switch {
	case a.minPrev == 0:
		return a.minCur
	case a.minCur == 0:
		return a.minPrev
	}
	return min(a.minCur, a.minPrev)
}

// observe takes one batch's latency, the claims waiting for a batch and
// the claims in the coalescer when it finished. It changes the limit at
// most once per baseline latency, as TCP changes its window once per
// round trip.
func (a *adaptiveLimit) observe(latency time.Duration, queued, inFlight int, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.windowStart) > baselineWindow {
		a.minPrev, a.minCur, a.windowStart = a.minCur, 0, now
	}
	if a.minCur == 0 || latency < a.minCur {
		a.minCur = latency
	}
	base := a.baselineLocked()
	ratio := float64(latency) / float64(max(base, time.Microsecond))
	pressure := ratio > latencyShrinkAbove || queued > a.highWater
	if pressure {
		a.pressedAt = now
	}
	if now.Sub(a.lastChange) < base {
		return
	}
	switch {
	case pressure:
		a.value = max(a.min, a.value*limitShrinkFactor)
	case ratio < latencyGrowBelow && queued < a.lowWater && float64(inFlight) >= a.value/2:
		a.value = min(a.max, a.value+math.Sqrt(a.value))
	default:
		return
	}
	a.lastChange = now
	a.limit.Store(int64(a.value))
}

// state returns the limit and the baseline latency.
func (a *adaptiveLimit) state() (int, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.value), a.baselineLocked()
}

// pressedSince reports whether a batch answered after t showed strain. With
// no batch answered, there is no news of strain: automatic degradation
// must not stay up on an old observation once the traffic is gone.
func (a *adaptiveLimit) pressedSince(t time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pressedAt.After(t)
}

// Automatic degradation: with degrade_auto set, a front door raises its own
// level above the admin's under overload and lowers it again when the
// overload is gone. Every move needs a run of consistent ticks, longer to
// go down than to go up (hysteresis), so a single slow batch or a quiet
// moment in a storm changes nothing.
const (
	autoTick          = 250 * time.Millisecond
	autoUpTicks       = 2  // 0.5s of pressure: engage the adaptive limit (L1)
	autoDownTicks     = 20 // 5s without pressure or shedding: back to L0
	autoL2Ticks       = 12 // 3s of L1 shedding over half the claims: L2
	autoL2ShedRatio   = 0.5
	autoDropStep      = 0.05
	autoDropMax       = 0.95
	autoDropRaiseShed = 0.2  // L2: still shedding this much: drop more
	autoDropLowerShed = 0.02 // L2: shedding this little: drop less
)

// autoLevel is the automatic part of the degradation level (0, 1 or 2) and,
// at 2, the fraction it drops. tick is called every autoTick.
type autoLevel struct {
	level     uint32
	drop      float64
	up, down  int
	shedTicks int
}

// tick moves the level. pressure: the adaptive limit saw latency or queue
// strain; shedRatio: the fraction of claims the adaptive limit refused
// during the tick.
func (a *autoLevel) tick(pressure bool, shedRatio float64) {
	switch a.level {
	case 0:
		if pressure {
			a.up++
		} else {
			a.up = 0
		}
		if a.up >= autoUpTicks {
			*a = autoLevel{level: 1}
		}
	case 1:
		if shedRatio > autoL2ShedRatio {
			a.shedTicks++
		} else {
			a.shedTicks = 0
		}
		if !pressure && shedRatio == 0 {
			a.down++
		} else {
			a.down = 0
		}
		switch {
		case a.shedTicks >= autoL2Ticks:
			*a = autoLevel{level: 2, drop: min(autoDropMax, math.Round(shedRatio/autoDropStep)*autoDropStep)}
		case a.down >= autoDownTicks:
			*a = autoLevel{}
		}
	case 2:
		switch {
		case shedRatio > autoDropRaiseShed:
			a.drop = min(autoDropMax, a.drop+autoDropStep)
		case shedRatio < autoDropLowerShed:
			a.drop -= autoDropStep
		}
		if a.drop < autoDropStep/2 {
			*a = autoLevel{level: 1}
		}
	}
}

// degradation is what the funnel applies now: the level (the admin's, or
// higher when automatic) and the drop fraction of L2 and L3.
type degradation struct {
	level uint32
	drop  float64
}

func effectiveDegradation(cfg FunnelConfig, auto autoLevel) degradation {
	d := degradation{level: cfg.DegradeLevel, drop: cfg.DropFraction}
	if cfg.DegradeAuto && auto.level > d.level {
		d.level = auto.level
		if auto.level == 2 && cfg.DropFraction == 0 {
			d.drop = auto.drop
		}
	}
	if d.level < 2 {
		d.drop = 0
	}
	return d
}
