package bench

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms, in microseconds: 1µs to latencyMax at 3 significant
// digits for a run's totals (0.1%), 2 digits per one-second window (1%,
// a tenth of the memory).
const (
	latencyMax        = 120 * time.Second
	totalDigits       = 3
	windowDigits      = 2
	windowLength      = time.Second
	windowsMax        = 3600 // the longest run has durationMax / windowLength windows, and some for the tail
	reasonGranted     = "granted"
	reasonSoldOut     = "sold_out"
	reasonLimit       = "limit_reached"
	reasonTimeout     = "timeout"
	reasonOther       = "other"
	reasonNotFound    = "not_found"
	reasonUnavailable = "unavailable"
)

func newLatencyHistogram(digits int) *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMax.Microseconds(), digits)
}

// window is what was answered in one second of a run.
type window struct {
	latency *hdrhistogram.Histogram
	answers map[string]int64
}

// recorder records every answer of a run: its latency in HdrHistograms
// (all answers, granted ones, and per one-second window by answer time)
// and its reason. Answers before start (the warm-up) are not recorded. It
// is safe for concurrent use: one mutex, held for two histogram updates
// (tens of nanoseconds, against the microseconds of a gRPC call).
type recorder struct {
	start time.Time // measurement starts; answers earlier are warm-up

	answered atomic.Int64 // recorded answers
	granted  atomic.Int64
	soldOut  atomic.Int64
	failed   atomic.Int64 // answers that are errors (not granted, sold out or limit reached)
	// firstSoldOut and lastGrant are nanoseconds since start (0: none yet),
	// warm-up answers included (then negative values are clamped to 1).
	firstSoldOut atomic.Int64
	lastGrant    atomic.Int64

	mu       sync.Mutex
	all      *hdrhistogram.Histogram
	grants   *hdrhistogram.Histogram
	windows  []*window
	answers  map[string]int64
	warmup   int64  // answers before start, not recorded
	firstErr string // the first error of reason "other", for the report
}

func newRecorder(start time.Time) *recorder {
	return &recorder{
		start:   start,
		all:     newLatencyHistogram(totalDigits),
		grants:  newLatencyHistogram(totalDigits),
		answers: map[string]int64{},
	}
}

// record records one answer: at is when it came, latency how long it took
// from its intended send, reason what it was (reasonOf).
func (r *recorder) record(at time.Time, latency time.Duration, reason string, err error) {
	since := at.Sub(r.start)
	switch reason {
	case reasonGranted:
		r.lastGrant.Store(int64(max(since, 1)))
	case reasonSoldOut:
		r.firstSoldOut.CompareAndSwap(0, int64(max(since, 1)))
	}
	if since < 0 {
		r.mu.Lock()
		r.warmup++
		r.mu.Unlock()
		return
	}
	us := min(max(latency.Microseconds(), 1), latencyMax.Microseconds())
	w := int(since / windowLength)
	r.answered.Add(1)
	switch reason {
	case reasonGranted:
		r.granted.Add(1)
	case reasonSoldOut:
		r.soldOut.Add(1)
	case reasonLimit:
	default:
		r.failed.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.all.RecordValue(us)
	if reason == reasonGranted {
		_ = r.grants.RecordValue(us)
	}
	r.answers[reason]++
	if reason == reasonOther && r.firstErr == "" && err != nil {
		r.firstErr = err.Error()
	}
	if w >= windowsMax {
		return
	}
	for len(r.windows) <= w {
		r.windows = append(r.windows, nil)
	}
	if r.windows[w] == nil {
		r.windows[w] = &window{latency: newLatencyHistogram(windowDigits), answers: map[string]int64{}}
	}
	_ = r.windows[w].latency.RecordValue(us)
	r.windows[w].answers[reason]++
}

// recorded is a copy of what a recorder holds, taken when the run is over.
type recorded struct {
	all, grants *hdrhistogram.Histogram
	windows     []*window
	answers     map[string]int64
	warmup      int64
	firstErr    string
}

func (r *recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := recorded{all: r.all.Clone(), grants: r.grants.Clone(), answers: maps.Clone(r.answers), warmup: r.warmup, firstErr: r.firstErr}
	for _, w := range r.windows {
		if w == nil {
			w = &window{latency: newLatencyHistogram(windowDigits), answers: map[string]int64{}}
		} else {
			w = &window{latency: w.latency.Clone(), answers: maps.Clone(w.answers)}
		}
		out.windows = append(out.windows, w)
	}
	return out
}

// lastWindow returns the answers and the 99th percentile latency of the
// last complete window, for the progress line.
func (r *recorder) lastWindow(now time.Time) (answers, granted int64, p99 time.Duration) {
	w := int(now.Sub(r.start)/windowLength) - 1
	r.mu.Lock()
	defer r.mu.Unlock()
	if w < 0 || w >= len(r.windows) || r.windows[w] == nil {
		return 0, 0, 0
	}
	for _, n := range r.windows[w].answers {
		answers += n
	}
	return answers, r.windows[w].answers[reasonGranted], time.Duration(r.windows[w].latency.ValueAtQuantile(99)) * time.Microsecond
}
