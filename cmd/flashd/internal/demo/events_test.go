package demo

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// barsOnly is a workload whose bars are fixed; the rest is not used.
type barsOnly struct {
	items   []itemView
	onEmpty func(bar int)
}

func (w *barsOnly) bars(context.Context) []itemView                             { return append([]itemView(nil), w.items...) }
func (w *barsOnly) progress() progress                                          { return progress{} }
func (w *barsOnly) stages() []localcluster.FunnelStage                          { return nil }
func (w *barsOnly) latencies() []time.Duration                                  { return nil }
func (w *barsOnly) summaryHead(func(format string, args ...any), time.Duration) {}
func (w *barsOnly) watchEmpty(f func(bar int))                                  { w.onEmpty = f }

// printedTimes are the seconds the plain output's event lines start with.
func printedTimes(t *testing.T, out string) []float64 {
	t.Helper()
	var times []float64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasSuffix(f[0], "s") {
			t.Fatalf("not an event line: %q", line)
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "s"), 64)
		if err != nil {
			t.Fatalf("not an event line: %q", line)
		}
		times = append(times, v)
	}
	return times
}

// TestEventsPrintInTimeOrder: the plain output prints events in the order
// of their times. A sell-out the stock poll learns of after a later event
// was printed (the crowd saw the first SOLD_OUT at 3.8s, the poll reads it
// at 4.2s, after "wave 2 opens" at 4.0s) is told when it is learnt; one the
// crowd reports as it happens is told at once, and only once.
func TestEventsPrintInTimeOrder(t *testing.T) {
	var out bytes.Buffer
	work := &barsOnly{items: []itemView{{name: "kite", total: 5}, {name: "lamp", total: 5}}}
	s := &liveRun{cfg: Config{Out: &out}, work: work, open: time.Now().Add(-4 * time.Second)}
	s.itemsNow = work.bars(context.Background())
	s.watchEmpty()
	s.event("entry wave 2 of 3 opens")
	work.items[0].available, work.items[0].known, work.items[0].soldOutAt = 0, true, 3800*time.Millisecond
	s.pollItemsOnce(context.Background())
	work.onEmpty(1) // the crowd's first SOLD_OUT for lamp
	work.items[1].available, work.items[1].known, work.items[1].soldOutAt = 0, true, 4100*time.Millisecond
	s.pollItemsOnce(context.Background())

	times := printedTimes(t, out.String())
	for i := 1; i < len(times); i++ {
		if times[i] < times[i-1] {
			t.Errorf("event %d at %.1fs printed after one at %.1fs:\n%s", i, times[i], times[i-1], out.String())
		}
	}
	if n := strings.Count(out.String(), "kite sold out"); n != 1 {
		t.Errorf("kite's sell-out told %d times:\n%s", n, out.String())
	}
	if n := strings.Count(out.String(), "lamp sold out"); n != 1 {
		t.Errorf("lamp's sell-out told %d times:\n%s", n, out.String())
	}
}
