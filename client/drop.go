package client

import (
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"
)

// Metadata of degradation level 3 (DESIGN.md section 6). The names are the
// front door's (frontdoor.MDDropFraction, frontdoor.MDClientDrops); the
// client cannot import that package, which imports it.
const (
	// mdDropFraction is on every front-door answer at level 3: the
	// fraction of calls clients should drop before sending them.
	mdDropFraction = "flashd-drop-fraction"
	// mdClientDrops on a call tells the front door this client applies
	// the fraction itself, so that it does not drop the call a second time.
	mdClientDrops = "flashd-client-drops"
)

// dropHold is how long a drop fraction holds without a fresh answer that
// repeats it. Answers come back on the calls that are not dropped, so the
// fraction follows the front doors closely; the hold only matters when
// they asked to drop everything, and then it is how long the client waits
// before it sends a call to ask again.
const dropHold = 5 * time.Second

// dropper applies the drop fraction the front doors sent last.
type dropper struct {
	fraction atomic.Uint64 // math.Float64bits
	until    atomic.Int64  // Unix nanoseconds after which it lapses
}

// learn takes the drop fraction from a front door's answer, if the answer
// came from one: an answer without the header means level 3 is off.
func (d *dropper) learn(header, trailer metadata.MD, now time.Time) {
	if len(header) == 0 && len(trailer) == 0 {
		return // no answer from a server: a connection error
	}
	v := header.Get(mdDropFraction)
	if len(v) == 0 {
		v = trailer.Get(mdDropFraction)
	}
	f := 0.0
	if len(v) > 0 {
		parsed, err := strconv.ParseFloat(v[0], 64)
		if err == nil && parsed > 0 {
			f = min(parsed, 1)
		}
	}
	d.fraction.Store(math.Float64bits(f))
	d.until.Store(now.Add(dropHold).UnixNano())
}

// drop decides whether to drop a call now, and returns the fraction.
func (d *dropper) drop(now time.Time) (bool, float64) {
	f := math.Float64frombits(d.fraction.Load())
	if f == 0 || now.UnixNano() >= d.until.Load() {
		return false, 0
	}
	return rand.Float64() < f, f
}

// current returns the fraction in force.
func (d *dropper) current(now time.Time) float64 {
	if now.UnixNano() >= d.until.Load() {
		return 0
	}
	return math.Float64frombits(d.fraction.Load())
}
