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

// cardReadsMetric counts the card calls past validation by method and
// outcome: the card calls' cache and store stages (frontdoor/cards.go).
const cardReadsMetric = "flashd_frontdoor_reads_total"

// addSamples adds one front door's funnel counter to f and returns its
// gauges. Card calls share the claims' stages up to validation; after it
// they are counted by method, and are added here as the cache stage (the
// empty reward pool, answered by the door) and the store stage.
func addSamples(samples []localcluster.Sample, f funnelCounts) doorGauges {
	f.AddSamples(samples)
	var g doorGauges
	for _, s := range samples {
		switch s.Name {
		case "flashd_frontdoor_degrade_level":
			g.degradeLevel = s.Value
		case "flashd_frontdoor_drop_fraction":
			g.dropFraction = s.Value
		case cardReadsMetric:
			if m := s.Labels["method"]; m != "DrawCard" && m != "RedeemSet" {
				continue
			}
			switch o := s.Labels["outcome"]; o {
			case "pool_empty_cached":
				f.Add("cache", "pool_empty", s.Value)
			case "ok":
				f.Add("cache", "ok", s.Value)
				f.Add("store", "granted", s.Value)
			case "refused", "store_error":
				f.Add("cache", "ok", s.Value)
				f.Add("store", o, s.Value)
			}
		}
	}
	return g
}
