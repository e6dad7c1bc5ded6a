package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scrapeTimeout bounds one read of a front door's /metrics.
const scrapeTimeout = time.Second

// funnelMetric is the front doors' counter of claims per funnel stage and
// outcome (frontdoor/metrics.go).
const funnelMetric = "flashd_frontdoor_requests_total"

// funnelStages are the front door's stages in the order a claim meets
// them, with what each calls passing on.
var funnelStages = []struct {
	stage, title string
}{
	{"auth", "auth"},
	{"frequency", "frequency (per user, per IP)"},
	{"global", "global rate limit"},
	{"drop", "degradation drop (L2)"},
	{"validate", "validate (open, wave, item)"},
	{"cache", "caches (sold out, limit)"},
	{"coalesce", "coalescer (queue, adaptive limit)"},
	{"store", "store (Raft)"},
}

// passing reports whether a stage's outcome lets the claim on (or, at the
// store, grants it).
func passing(outcome string) bool {
	switch outcome {
	case "ok", "granted", "replayed", "bypassed":
		return true
	}
	return false
}

// funnelCounts is claims per stage and outcome, summed over front doors.
type funnelCounts map[string]map[string]float64

func (f funnelCounts) add(stage, outcome string, v float64) {
	if f[stage] == nil {
		f[stage] = map[string]float64{}
	}
	f[stage][outcome] += v
}

// reached is how many claims a stage saw; stopped how many it did not
// pass on (answered itself).
func (f funnelCounts) reached(stage string) float64 {
	var n float64
	for _, v := range f[stage] {
		n += v
	}
	return n
}

func (f funnelCounts) stopped(stage string) float64 {
	var n float64
	for o, v := range f[stage] {
		if !passing(o) {
			n += v
		}
	}
	return n
}

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
		g, err := scrapeOne(ctx, addr, f)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		gauges = append(gauges, g)
	}
	return f, gauges, firstErr
}

func scrapeOne(ctx context.Context, addr string, f funnelCounts) (doorGauges, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return doorGauges{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return doorGauges{}, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return doorGauges{}, fmt.Errorf("scrape %s: %s", addr, res.Status)
	}
	return parseMetrics(res.Body, f)
}

// parseMetrics reads the Prometheus text format, adding the funnel
// counter to f and returning the gauges.
func parseMetrics(r io.Reader, f funnelCounts) (doorGauges, error) {
	var g doorGauges
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, value, ok := parseSample(line)
		if !ok {
			continue
		}
		switch name {
		case funnelMetric:
			f.add(labels["stage"], labels["outcome"], value)
		case "flashd_frontdoor_degrade_level":
			g.degradeLevel = value
		case "flashd_frontdoor_drop_fraction":
			g.dropFraction = value
		}
	}
	return g, sc.Err()
}

// parseSample splits `name{a="x",b="y"} 12` into its parts. Label values
// with escaped quotes are not needed here and not supported.
func parseSample(line string) (string, map[string]string, float64, bool) {
	var labels map[string]string
	name, rest, hasLabels := strings.Cut(line, "{")
	if hasLabels {
		var body string
		var ok bool
		body, rest, ok = strings.Cut(rest, "}")
		if !ok {
			return "", nil, 0, false
		}
		labels = map[string]string{}
		for _, pair := range strings.Split(body, ",") {
			k, v, ok := strings.Cut(pair, "=")
			if !ok {
				continue
			}
			labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
	} else {
		name, rest, _ = strings.Cut(line, " ")
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return strings.TrimSpace(name), labels, v, true
}
