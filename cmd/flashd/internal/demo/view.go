package demo

import (
	"fmt"
	"slices"
	"time"
)

// view gathers what a frame shows.
func (s *sale) view(final bool) view {
	st := s.client.Stats()
	granted := s.crowd.outcomes[outGranted].Load()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastRate.at.IsZero() {
		s.lastRate = rateSample{at: now, attempts: st.Attempts, granted: granted}
	} else if dt := now.Sub(s.lastRate.at).Seconds(); dt >= 1 {
		s.rate = float64(st.Attempts-s.lastRate.attempts) / dt
		s.grantRate = float64(granted-s.lastRate.granted) / dt
		s.lastRate = rateSample{at: now, attempts: st.Attempts, granted: granted}
	}
	v := view{
		campaign: campaignID, elapsed: max(0, time.Since(s.open)), bound: s.cfg.Duration, users: s.cfg.Users,
		arrived: s.crowd.arrived.Load(), done: s.crowd.finished.Load(),
		leaderID: s.leaderID, leaderRegion: s.leaderReg,
		items: slices.Clone(s.itemsNow), sentPerSecond: s.rate, granted: granted, grantedPerSec: s.grantRate,
		attempts: st.Attempts, presses: s.crowd.pressed.Load(), clientDropped: st.Dropped, budgetSpent: st.BudgetExhausted,
		funnel: s.funnel, events: slices.Clone(s.events),
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
		// Averages over the whole sale.
		v.phase = fmt.Sprintf("ended after %.1fs", s.ended.Seconds())
		v.sentPerSecond = float64(st.Attempts) / s.ended.Seconds()
		v.grantedPerSec = float64(granted) / s.ended.Seconds()
	}
	return v
}
