package demo

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// summary prints what happened and what the store holds: the workload's
// own account of the crowd and the stock, then the client library, the
// funnel, the latencies, the chaos, and the invariants read back from the
// store (notes follow them).
func (s *liveRun) summary(out io.Writer, results []checkResult, notes ...string) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	s.mu.Lock()
	ended, funnel, chaosNotes := s.ended, s.funnel, s.chaosNotes
	s.mu.Unlock()

	p("")
	p("── summary ──────────────────────────────────────────────────────────────")
	s.work.summaryHead(p, ended)
	st := s.client.Stats()
	pr := s.work.progress()
	p("client library: %s attempts sent, %s of them retries; %s calls dropped locally (L3); %s calls ended by the retry budget",
		count(int64(st.Attempts)), count(int64(st.Retries)), count(int64(st.Dropped)), count(int64(st.BudgetExhausted)))
	p("")
	p("rejections per funnel stage (front doors, summed; a stage counts every attempt that reached it):")
	p("  %-34s %10s %10s", "stage", "reached", "stopped")
	p("  %-34s %10s %10s   %s", "client library ("+s.callName+")", count(pr.calls), count(int64(st.Dropped)), "dropped locally at L3")
	for _, stage := range s.work.stages() {
		p("  %-34s %10s %10s   %s", stage.Title, count(int64(funnel.Reached(stage.Name))), count(int64(funnel.Stopped(stage.Name))), why(funnel, stage.Name))
	}
	p("")
	if lat := s.work.latencies(); len(lat) > 0 {
		p("%s latency (one %s, client retries included, %s %s sent): p50 %v · p99 %v · max %v",
			s.latency, s.callOne, count(int64(len(lat))), s.callName,
			roundDuration(percentile(lat, 0.50)), roundDuration(percentile(lat, 0.99)), roundDuration(lat[len(lat)-1]))
	}
	if s.cfg.Chaos {
		p("")
		p("chaos:")
		if len(chaosNotes) == 0 {
			p("  the %s ended before the leader could be killed", s.kind)
		}
		for _, n := range chaosNotes {
			p("  %s", n)
		}
	}
	p("")
	p("invariants, read back from the store:")
	pass := true
	for _, r := range results {
		mark := "PASS"
		if !r.ok {
			mark, pass = "FAIL", false
		}
		p("  %s  %s: %s", mark, r.name, r.detail)
	}
	for _, n := range notes {
		p("        %s", n)
	}
	if pass {
		p("result: PASS")
	} else {
		p("result: FAIL")
	}
}

// summaryHead is the flash sale's account: the users, the items, the
// answers to presses.
func (f *flashSale) summaryHead(p func(string, ...any), ended time.Duration) {
	w := f.crowd
	unserved := 0
	for _, u := range f.users {
		if u.presses == 0 {
			unserved++
		}
	}
	arrived, finished := w.arrived.Load(), w.finished.Load()
	p("users     %s: %s pressed, %s done, %s still trying and %s not yet arrived when the %v bound was reached",
		count(int64(len(f.users))), count(arrived), count(finished), count(arrived-finished), count(int64(unserved)), f.duration)
	p("          %s presses in %.1fs", count(w.pressed.Load()), ended.Seconds())
	p("")
	p("%-10s %9s %9s %15s   %s", "item", "stock", "granted", "held in store", "sold out after")
	var totalStock, totalGranted, totalHeld uint64
	var lastSoldOut time.Duration
	allSold := true
	for i, name := range f.items {
		held := "?"
		if i < len(f.sv.items) {
			h := f.sv.items[i].GetReserved() + f.sv.items[i].GetSold()
			held, totalHeld = count(int64(h)), totalHeld+h
		}
		soldOut := "-"
		if at := time.Duration(w.soldOutAt[i].Load()); at > 0 {
			soldOut = fmt.Sprintf("%.1fs", at.Seconds())
			lastSoldOut = max(lastSoldOut, at)
		} else {
			allSold = false
		}
		granted := uint64(w.perItem[i].Load())
		totalStock, totalGranted = totalStock+f.stock[i], totalGranted+granted
		p("%-10s %9s %9s %15s   %s", name, count(int64(f.stock[i])), count(int64(granted)), held, soldOut)
	}
	sellOut := "not sold out"
	if allSold {
		sellOut = fmt.Sprintf("%.1fs (time to sell out)", lastSoldOut.Seconds())
	}
	p("%-10s %9s %9s %15s   %s", "all", count(int64(totalStock)), count(int64(totalGranted)), count(int64(totalHeld)), sellOut)
	if totalHeld > totalGranted {
		p("          %s claims are held for users whose answer did not reach them (a press that timed out in the failover,", count(int64(totalHeld-totalGranted)))
		p("          say): the store keeps them under their request IDs, and ListMyClaims shows them to their users.")
	}
	p("")
	var answers []string
	for o := range outcomeCount {
		if n := w.outcomes[o].Load(); n > 0 {
			answers = append(answers, fmt.Sprintf("%s %s", outcomeNames[o], count(n)))
		}
	}
	p("answers to presses (client): %s", strings.Join(answers, " · "))
	if msg := w.otherError.Load(); msg != nil {
		p("          first unexpected error: %s", *msg)
	}
}

// percentile returns the q-quantile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// roundDuration keeps three significant figures or so.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
