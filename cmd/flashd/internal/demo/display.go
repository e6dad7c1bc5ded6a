package demo

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// Refresh rates of the display.
const (
	frameInterval = 250 * time.Millisecond // live frames on a terminal
	lineInterval  = 2 * time.Second        // plain lines otherwise
	barWidth      = 30
	eventsShown   = 6
)

// view is everything one frame shows.
type view struct {
	kind           string // "sale" or "event"
	campaign       string
	callName       string // "presses", "calls"
	elapsed, bound time.Duration
	users          int
	arrived, done  int64
	leaderID       string
	leaderRegion   string
	doors          []string // "fd1 (east)"
	degradeLevel   int
	dropFraction   float64
	items          []itemView
	sentPerSecond  float64
	rates          []rateView // granted; draws, redemptions
	attempts       uint64
	calls          int64
	clientDropped  uint64
	budgetSpent    uint64
	stages         []localcluster.FunnelStage
	funnel         funnelCounts
	events         []event
	phase          string // "" while the crowd runs
}

// rateView is one counted thing: per second now, and in all.
type rateView struct {
	name      string
	perSecond float64
	total     int64
}

// itemView is one stock bar: an item's units, the reward pool, a capped
// card.
type itemView struct {
	name             string
	total, available uint64
	known            bool // the store answered
	soldOutAt        time.Duration
	empty            string // what running out is called; "": "sold out"
	reported         bool   // the viewer was told it ran out
}

func (it itemView) emptyWord() string {
	if it.empty == "" {
		return "sold out"
	}
	return it.empty
}

// event is something the viewer should notice, at a time since the sale
// opened.
type event struct {
	at   time.Duration
	text string
}

// render returns the lines of a live frame.
func render(v view) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	status := fmt.Sprintf("%4.1fs of %v", v.elapsed.Seconds(), v.bound)
	if v.phase != "" {
		status = v.phase
	}
	add("flashd demo · %s %q · %s · users %s of %s arrived, %s done", v.kind, v.campaign, status,
		count(v.arrived), count(int64(v.users)), count(v.done))
	leader := "none: election under way"
	if v.leaderID != "" {
		leader = fmt.Sprintf("%s (%s)", v.leaderID, v.leaderRegion)
	}
	degrade := fmt.Sprintf("L%d", v.degradeLevel)
	if v.dropFraction > 0 {
		degrade += fmt.Sprintf(", drop %.0f%%", v.dropFraction*100)
	}
	add("store leader %-24s front doors %s · degradation %s", leader, strings.Join(v.doors, " "), degrade)
	for _, it := range v.items {
		add("  %-9s %s", it.name, itemLine(it))
	}
	rate := "requests "
	if v.phase != "" {
		rate = "average  "
	}
	var perSecond, totals []string
	for _, r := range v.rates {
		perSecond = append(perSecond, fmt.Sprintf("%s/s %s", count(int64(r.perSecond)), r.name))
		totals = append(totals, fmt.Sprintf("%s %s", count(r.total), r.name))
	}
	add("%s %s/s sent · %s · %s, %s attempts in all", rate, count(int64(v.sentPerSecond)),
		strings.Join(perSecond, " · "), strings.Join(totals, ", "), count(int64(v.attempts)))
	add("funnel                                  reached    stopped")
	add("  %-34s %10s %10s   (L3 drop %s, retry budget spent %s)", "client library ("+v.callName+")",
		count(v.calls), count(int64(v.clientDropped)), count(int64(v.clientDropped)), count(int64(v.budgetSpent)))
	for _, s := range v.stages {
		line := fmt.Sprintf("  %-34s %10s %10s", s.Title, count(int64(v.funnel.Reached(s.Name))), count(int64(v.funnel.Stopped(s.Name))))
		if why := why(v.funnel, s.Name); why != "" {
			line += "   " + why
		}
		out = append(out, line)
	}
	add("events")
	events := v.events
	if len(events) > eventsShown {
		events = events[len(events)-eventsShown:]
	}
	for _, e := range events {
		add("  %6.1fs  %s", e.at.Seconds(), e.text)
	}
	return out
}

func itemLine(it itemView) string {
	if !it.known || it.total == 0 {
		return strings.Repeat("·", barWidth) + "   (store not answering)"
	}
	left := int((it.available*barWidth + it.total - 1) / it.total)
	bar := strings.Repeat("█", left) + strings.Repeat("░", barWidth-left)
	s := fmt.Sprintf("%s %7s of %s left", bar, count(int64(it.available)), count(int64(it.total)))
	if it.soldOutAt > 0 {
		s += fmt.Sprintf(" · %s at %.1fs", it.emptyWord(), it.soldOutAt.Seconds())
	}
	return s
}

// why says what a stage stopped claims for, largest first: "sold out 31,990".
func why(f funnelCounts, stage string) string {
	type reason struct {
		name string
		n    float64
	}
	var rs []reason
	for o, v := range f[stage] {
		if !localcluster.Passing(o) && v > 0 {
			rs = append(rs, reason{strings.ReplaceAll(o, "_", " "), v})
		}
	}
	for i := 1; i < len(rs); i++ { // insertion sort: a handful of outcomes
		for j := i; j > 0 && (rs[j].n > rs[j-1].n || rs[j].n == rs[j-1].n && rs[j].name < rs[j-1].name); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %s", r.name, count(int64(r.n))))
	}
	if stage == "store" {
		if g := f[stage]["granted"]; g > 0 {
			parts = append([]string{"granted " + count(int64(g))}, parts...)
		}
	}
	return strings.Join(parts, ", ")
}

// plainLine is one periodic line for a log (standard output not a
// terminal).
func plainLine(v view) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5.1fs leader=%s", v.elapsed.Seconds(), orDash(v.leaderID))
	fmt.Fprintf(&b, " sent/s=%d", int64(v.sentPerSecond))
	for _, r := range v.rates {
		fmt.Fprintf(&b, " %s=%d %s/s=%d", r.name, r.total, r.name, int64(r.perSecond))
	}
	b.WriteString(" left:")
	for _, it := range v.items {
		if it.known {
			fmt.Fprintf(&b, " %s=%d", it.name, it.available)
		} else {
			fmt.Fprintf(&b, " %s=?", it.name)
		}
	}
	fmt.Fprintf(&b, " users=%d/%d stopped:", v.arrived, v.users)
	if v.clientDropped > 0 {
		fmt.Fprintf(&b, " client-L3=%d", v.clientDropped)
	}
	for _, s := range v.stages {
		if n := v.funnel.Stopped(s.Name); n > 0 {
			fmt.Fprintf(&b, " %s=%d", s.Name, int64(n))
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// screen draws frames in place on a terminal with ANSI escapes: each frame
// moves the cursor back up over the one before and overwrites it.
type screen struct {
	w     io.Writer
	lines int
}

func (s *screen) draw(lines []string) {
	var b strings.Builder
	if s.lines == 0 {
		b.WriteString("\x1b[?25l") // hide the cursor
	} else {
		fmt.Fprintf(&b, "\x1b[%dF", s.lines) // up to the first line of the last frame
	}
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\x1b[K\n") // clear what the last frame left on the line
	}
	for i := len(lines); i < s.lines; i++ {
		b.WriteString("\x1b[K\n")
	}
	s.lines = max(s.lines, len(lines))
	_, _ = io.WriteString(s.w, b.String())
}

// close shows the cursor again.
func (s *screen) close() {
	if s.lines > 0 {
		_, _ = io.WriteString(s.w, "\x1b[?25h")
	}
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
