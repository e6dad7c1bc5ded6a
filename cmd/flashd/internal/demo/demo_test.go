package demo

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

const sampleMetrics = `# HELP flashd_frontdoor_requests_total Claims reaching each funnel stage.
# TYPE flashd_frontdoor_requests_total counter
flashd_frontdoor_requests_total{outcome="ok",stage="auth"} 100
flashd_frontdoor_requests_total{outcome="missing",stage="auth"} 2
flashd_frontdoor_requests_total{outcome="ok",stage="global"} 60
flashd_frontdoor_requests_total{outcome="limited",stage="global"} 40
flashd_frontdoor_requests_total{outcome="ok",stage="cache"} 10
flashd_frontdoor_requests_total{outcome="sold_out",stage="cache"} 45
flashd_frontdoor_requests_total{outcome="replayed",stage="cache"} 5
flashd_frontdoor_requests_total{outcome="granted",stage="store"} 8
flashd_frontdoor_requests_total{outcome="sold_out",stage="store"} 2
flashd_frontdoor_degrade_level 3
flashd_frontdoor_drop_fraction 0.25
go_gc_duration_seconds{quantile="0.5"} 1.5e-05
`

func TestParseMetricsSumsTheFunnel(t *testing.T) {
	f := funnelCounts{}
	for range 2 { // two front doors
		samples, err := localcluster.ParseMetrics(strings.NewReader(sampleMetrics))
		if err != nil {
			t.Fatal(err)
		}
		g := addSamples(samples, f)
		if g.degradeLevel != 3 || g.dropFraction != 0.25 {
			t.Errorf("gauges %+v, want level 3 and 0.25", g)
		}
	}
	checks := []struct {
		stage            string
		reached, stopped float64
		why              string
	}{
		{"auth", 204, 4, "missing 4"},
		{"global", 200, 80, "limited 80"},
		{"cache", 120, 90, "sold out 90"}, // replayed is an answer, not a stop
		{"store", 20, 4, "granted 16, sold out 4"},
		{"validate", 0, 0, ""},
	}
	for _, c := range checks {
		if r, s := f.Reached(c.stage), f.Stopped(c.stage); r != c.reached || s != c.stopped {
			t.Errorf("%s: reached %v stopped %v, want %v and %v", c.stage, r, s, c.reached, c.stopped)
		}
		if why := why(f, c.stage); why != c.why {
			t.Errorf("%s: why %q, want %q", c.stage, why, c.why)
		}
	}
}

func TestRenderedFrameFitsATerminal(t *testing.T) {
	f := funnelCounts{}
	samples, err := localcluster.ParseMetrics(strings.NewReader(sampleMetrics))
	if err != nil {
		t.Fatal(err)
	}
	addSamples(samples, f)
	v := view{
		kind: "sale", campaign: "spring", callName: "presses", stages: localcluster.FunnelStages, elapsed: 12300 * time.Millisecond, bound: 30 * time.Second, users: 200_000,
		arrived: 123_456, done: 100_000, leaderID: "n2", leaderRegion: "north",
		doors: []string{"fd1 (east)", "fd2 (west)"}, degradeLevel: 3, dropFraction: 0.25,
		items: []itemView{
			{name: "lantern", total: 1000, available: 0, known: true, soldOutAt: 4100 * time.Millisecond},
			{name: "mooncake", total: 1000, available: 512, known: true},
			{name: "kite", total: 1000},
		},
		sentPerSecond: 12_345, rates: []rateView{{name: "granted", perSecond: 210, total: 1_488}}, attempts: 9_999_999, calls: 8_888_888,
		clientDropped: 1_234_567, budgetSpent: 99_999, funnel: f,
		events: []event{{at: 6 * time.Second, text: "chaos: kill -9 store leader n1 (east), pid 12345, with 1,234 claims granted"}},
	}
	lines := render(v)
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 110 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	frame := strings.Join(lines, "\n")
	for _, want := range []string{"n2 (north)", "sold out at 4.1s", "512 of 1,000 left", "store not answering", "12,345/s sent", "210/s granted", "1,488 granted", "limited 40", "L3, drop 25%", "kill -9"} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q:\n%s", want, frame)
		}
	}
	if line := plainLine(v); strings.Contains(line, "\n") || !strings.Contains(line, "leader=n2") || !strings.Contains(line, "global=40") {
		t.Errorf("plain line %q", line)
	}
}

func TestScreenRedrawsInPlace(t *testing.T) {
	var b strings.Builder
	s := &screen{w: &b}
	s.draw([]string{"one", "two", "three"})
	s.draw([]string{"four"})
	s.close()
	out := b.String()
	if !strings.HasPrefix(out, "\x1b[?25l") || !strings.HasSuffix(out, "\x1b[?25h") {
		t.Errorf("cursor not hidden then shown: %q", out)
	}
	// The second frame goes back up 3 lines and blanks the 2 it does not use.
	if !strings.Contains(out, "\x1b[3Ffour\x1b[K\n\x1b[K\n\x1b[K\n") {
		t.Errorf("second frame does not overwrite the first: %q", out)
	}
}

func TestSplitStock(t *testing.T) {
	got := splitStock(1000, 3)
	if got[0] != 334 || got[1] != 333 || got[2] != 333 {
		t.Errorf("splitStock(1000, 3) = %v", got)
	}
}

func TestSchedulerHandsOutUsersWhenDue(t *testing.T) {
	now := time.Now()
	users := []*user{{id: "late", at: now.Add(30 * time.Millisecond)}, {id: "first", at: now.Add(-time.Second)}, {id: "second", at: now}}
	s := newScheduler(users)
	work := make(chan *user)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go s.dispatch(ctx, work)
	var order []string
	for u := range work {
		order = append(order, u.id)
		again := u.id == "first" && len(order) == 1
		if again {
			u.at = time.Now().Add(60 * time.Millisecond) // presses again, after "late"
		}
		if u.id == "late" && time.Now().Before(u.at) {
			t.Errorf("user handed out %v before due", time.Until(u.at))
		}
		s.done(u, again)
	}
	if got := strings.Join(order, ","); got != "first,second,late,first" {
		t.Errorf("order %s, want first,second,late,first", got)
	}
}

func TestConfigValidates(t *testing.T) {
	good := Config{Binary: "flashd", Users: 10, Stock: 3, Items: 3, PerUserLimit: 1, Duration: 5 * time.Second,
		Waves: 2, WaveInterval: time.Second, Concurrency: 4, FrontDoors: 2}
	if err := good.validate(); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	bad := map[string]func(c *Config){
		"no users":                  func(c *Config) { c.Users = 0 },
		"fewer units than items":    func(c *Config) { c.Stock = 2 },
		"too many items":            func(c *Config) { c.Items = len(itemNames) + 1 },
		"last wave after the bound": func(c *Config) { c.WaveInterval = 5 * time.Second },
		"degrade level 4":           func(c *Config) { c.DegradeLevel = 4 },
		"drop everything":           func(c *Config) { c.DropFraction = 1 },
		"no concurrency":            func(c *Config) { c.Concurrency = 0 },
		"negative global rate":      func(c *Config) { c.GlobalRate = -1 },
	}
	for name, mutate := range bad {
		c := good
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Card calls are counted by method after validation; the card event's
// funnel shows them as the cache (an empty pool answered by the door) and
// the store stages, and a frame of the event fits a terminal.
func TestCardFunnelAndFrame(t *testing.T) {
	samples, err := localcluster.ParseMetrics(strings.NewReader(`flashd_frontdoor_requests_total{outcome="ok",stage="validate"} 50
flashd_frontdoor_reads_total{method="DrawCard",outcome="ok"} 30
flashd_frontdoor_reads_total{method="RedeemSet",outcome="ok"} 5
flashd_frontdoor_reads_total{method="RedeemSet",outcome="refused"} 4
flashd_frontdoor_reads_total{method="RedeemSet",outcome="pool_empty_cached"} 9
flashd_frontdoor_reads_total{method="GetItem",outcome="ok"} 1000
flashd_frontdoor_reads_total{method="DrawCard",outcome="refused_early"} 2
`))
	if err != nil {
		t.Fatal(err)
	}
	f := funnelCounts{}
	addSamples(samples, f)
	if r, s := f.Reached("cache"), f.Stopped("cache"); r != 48 || s != 9 {
		t.Errorf("cache stage reached %v stopped %v, want 48 and 9", r, s)
	}
	if w := why(f, "store"); f.Reached("store") != 39 || w != "granted 35, refused 4" {
		t.Errorf("store stage reached %v (%q), want 39 (granted 35, refused 4)", f.Reached("store"), w)
	}
	v := view{
		kind: "event", campaign: "spring-cards", callName: "calls", stages: cardStages, funnel: f,
		elapsed: 3 * time.Second, bound: 30 * time.Second, users: 5000, arrived: 1200, done: 800, leaderID: "n1", leaderRegion: "east",
		items: []itemView{
			{name: "rewards", total: 25, available: 0, known: true, soldOutAt: 2500 * time.Millisecond, empty: "pool empty"},
			{name: "xi (cap)", total: 200, available: 13, known: true, empty: "cap reached"},
			{name: "draws", total: 22_500, available: 10_000, known: true, empty: "all drawn"},
		},
		rates: []rateView{{name: "draws", perSecond: 1234, total: 12_500}, {name: "redeemed", perSecond: 3, total: 25}},
	}
	lines := render(v)
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 110 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	frame := strings.Join(lines, "\n")
	for _, want := range []string{`event "spring-cards"`, "pool empty at 2.5s", "13 of 200 left", "1,234/s draws · 3/s redeemed", "12,500 draws, 25 redeemed",
		"client library (calls)", "cache (reward pool empty)", "pool empty 9"} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q:\n%s", want, frame)
		}
	}
}
