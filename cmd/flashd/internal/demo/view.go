package demo

import (
	"fmt"
	"slices"
	"time"
)

// view gathers what a frame shows.
func (s *liveRun) view(final bool) view {
	st := s.client.Stats()
	p := s.work.progress()
	counts := make([]int64, len(p.counts))
	for i, c := range p.counts {
		counts[i] = c.n
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastRate.at.IsZero() {
		s.lastRate = rateSample{at: now, attempts: st.Attempts, counts: counts}
	} else if dt := now.Sub(s.lastRate.at).Seconds(); dt >= 1 {
		s.rate = float64(st.Attempts-s.lastRate.attempts) / dt
		s.countRates = make([]float64, len(counts))
		for i := range counts {
			if i < len(s.lastRate.counts) {
				s.countRates[i] = float64(counts[i]-s.lastRate.counts[i]) / dt
			}
		}
		s.lastRate = rateSample{at: now, attempts: st.Attempts, counts: counts}
	}
	v := view{
		kind: s.kind, campaign: s.campaign, callName: s.callName,
		elapsed: max(0, time.Since(s.open)), bound: s.cfg.Duration, users: s.cfg.Users,
		arrived: p.arrived, done: p.done, leaderID: s.leaderID, leaderRegion: s.leaderReg,
		items: slices.Clone(s.itemsNow), sentPerSecond: s.rate,
		attempts: st.Attempts, calls: p.calls, clientDropped: st.Dropped, budgetSpent: st.BudgetExhausted,
		stages: s.work.stages(), funnel: s.funnel, events: slices.Clone(s.events),
	}
	for i, c := range p.counts {
		r := rateView{name: c.name, total: c.n}
		if i < len(s.countRates) {
			r.perSecond = s.countRates[i]
		}
		v.rates = append(v.rates, r)
	}
	for _, d := range s.cl.Doors {
		v.doors = append(v.doors, fmt.Sprintf("%s (%s)", d.Name, d.Region))
	}
	for _, g := range s.gauges {
		v.degradeLevel = max(v.degradeLevel, int(g.degradeLevel))
		v.dropFraction = max(v.dropFraction, g.dropFraction)
	}
	slices.SortStableFunc(v.events, func(a, b event) int { return int(a.at - b.at) })
	if final && s.ended > 0 {
		// Averages over the whole run.
		v.phase = fmt.Sprintf("ended after %.1fs", s.ended.Seconds())
		v.sentPerSecond = float64(st.Attempts) / s.ended.Seconds()
		for i := range v.rates {
			v.rates[i].perSecond = float64(v.rates[i].total) / s.ended.Seconds()
		}
	}
	return v
}
