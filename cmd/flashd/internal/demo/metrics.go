package demo

import (
	"context"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// funnelCounts is claims per stage and outcome, summed over front doors.
type funnelCounts = localcluster.Funnel

// doorGauges are the gauges of one front door the display shows.
type doorGauges struct {
	degradeLevel, dropFraction float64
}

// scrapeDoors reads every front door's /metrics and sums the funnel. A door
// that does not answer is skipped (and reported in err).
func scrapeDoors(ctx context.Context, httpAddrs []string) (funnelCounts, []doorGauges, error) {
	f := funnelCounts{}
	var gauges []doorGauges
	var firstErr error
	for _, addr := range httpAddrs {
		samples, err := localcluster.Scrape(ctx, addr)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		gauges = append(gauges, addSamples(samples, f))
	}
	return f, gauges, firstErr
}

// addSamples adds one front door's funnel counter to f and returns its
// gauges.
func addSamples(samples []localcluster.Sample, f funnelCounts) doorGauges {
	f.AddSamples(samples)
	var g doorGauges
	for _, s := range samples {
		switch s.Name {
		case "flashd_frontdoor_degrade_level":
			g.degradeLevel = s.Value
		case "flashd_frontdoor_drop_fraction":
			g.dropFraction = s.Value
		}
	}
	return g
}
