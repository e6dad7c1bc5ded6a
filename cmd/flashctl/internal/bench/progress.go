package bench

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// The progress display: on a terminal one line redrawn four times a
// second, else a line every plainInterval.
const (
	liveInterval  = 250 * time.Millisecond
	plainInterval = 5 * time.Second
	barWidth      = 24
)

// showProgress shows the run's progress on cfg.Progress until the
// returned function is called.
func (b *bench) showProgress(spec runSpec, rec *recorder) (stop func()) {
	w := b.cfg.Progress
	if w == nil {
		return func() {}
	}
	every := plainInterval
	if b.cfg.Live {
		every = liveInterval
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if b.cfg.Live {
					fmt.Fprint(w, "\r\x1b[K")
				}
				return
			case now := <-t.C:
				line := b.progressLine(spec, rec, now)
				if b.cfg.Live {
					fmt.Fprint(w, "\r"+line+"\x1b[K")
				} else {
					fmt.Fprintln(w, line)
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// progressLine says where a run is: its bar, the last second's rates and
// 99th percentile, and the errors so far.
func (b *bench) progressLine(spec runSpec, rec *recorder, now time.Time) string {
	head := fmt.Sprintf("[%d/%d] %-20s", b.runs, b.plannedRuns(), spec.name)
	since := now.Sub(rec.start)
	if since < 0 {
		return fmt.Sprintf("%s warm-up %.1fs of %v", head, (spec.load.warmup + since).Seconds(), spec.load.warmup)
	}
	share := min(1, since.Seconds()/spec.load.duration.Seconds())
	filled := int(share * barWidth)
	bar := strings.Repeat("█", filled) + strings.Repeat("░", barWidth-filled)
	answers, granted, p99 := rec.lastWindow(now)
	line := fmt.Sprintf("%s %s %5.1fs/%v  %s answers/s  %s granted/s  p99 %s  errors %s",
		head, bar, min(since, spec.load.duration).Seconds(), spec.load.duration, count(answers), count(granted),
		ms(float64(p99.Microseconds())/1000), count(rec.failed.Load()))
	if spec.load.rate > 0 {
		line += fmt.Sprintf("  (offered %s/s)", count(int64(spec.load.rate)))
	}
	if at := rec.firstSoldOut.Load(); at > 0 {
		line += fmt.Sprintf("  sold out at %.2fs", time.Duration(at).Seconds())
	}
	return line
}

// progressf prints a line of news on the progress output.
func (b *bench) progressf(format string, args ...any) {
	if b.cfg.Progress != nil {
		fmt.Fprintf(b.cfg.Progress, format+"\n", args...)
	}
}

// runLine sums up a finished run in one line.
func runLine(r *RunReport) string {
	return fmt.Sprintf("%-20s done: %s granted/s, %s answers/s, p50 %s p99 %s, %s errors",
		r.Name, count(int64(r.GrantedPerSecond)), count(int64(r.AnswersPerSecond)), ms(r.Latency.P50), ms(r.Latency.P99), count(r.Errors))
}

// count formats n with thousands separators: 1,234,567.
func count(n int64) string {
	if n < 0 {
		return "-" + count(-n)
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// ms formats milliseconds for a person: 0.41ms, 12.3ms, 1.52s.
func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fs", v/1000)
}
