package localcluster

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

// ScrapeTimeout bounds one read of a process's /metrics.
const ScrapeTimeout = time.Second

// Metric names read by the tools.
const (
	// FunnelMetric is the front doors' counter of claims per funnel stage
	// and outcome (frontdoor/metrics.go).
	FunnelMetric = "flashd_frontdoor_requests_total"
	// CPUMetric is every Go process's CPU seconds (Prometheus' process
	// collector).
	CPUMetric = "process_cpu_seconds_total"
	// StoreBatchesMetric counts the claim batches a store node proposed
	// as leader; StoreBatchClaimsMetric the claims in them (the sum of
	// the batch size histogram).
	StoreBatchesMetric     = "flashd_store_claim_batches_total"
	StoreBatchClaimsMetric = "flashd_store_claim_batch_size_sum"
	// StoreDrawBatchesMetric and StoreDrawBatchDrawsMetric are the same
	// for card draws (a draw batch is one log entry too).
	StoreDrawBatchesMetric    = "flashd_store_draw_batches_total"
	StoreDrawBatchDrawsMetric = "flashd_store_draw_batch_size_sum"
)

// FunnelStage is one stage of the front door's funnel.
type FunnelStage struct {
	Name  string // the metric's stage label
	Title string // what a person reads
}

// FunnelStages are the front door's stages in the order a claim meets
// them.
var FunnelStages = []FunnelStage{
	{"auth", "auth"},
	{"frequency", "frequency (per user, per IP)"},
	{"global", "global rate limit"},
	{"drop", "degradation drop (L2)"},
	{"validate", "validate (open, wave, item)"},
	{"cache", "caches (sold out, limit)"},
	{"coalesce", "coalescer (queue, adaptive limit)"},
	{"store", "store (Raft)"},
}

// Passing reports whether a stage's outcome lets the claim on (or, at the
// store, grants it).
func Passing(outcome string) bool {
	switch outcome {
	case "ok", "granted", "replayed", "bypassed":
		return true
	}
	return false
}

// Funnel is claims per stage and outcome, summed over front doors.
type Funnel map[string]map[string]float64

// Add adds v claims with outcome at stage.
func (f Funnel) Add(stage, outcome string, v float64) {
	if f[stage] == nil {
		f[stage] = map[string]float64{}
	}
	f[stage][outcome] += v
}

// AddSamples adds the funnel counter's samples of one front door.
func (f Funnel) AddSamples(samples []Sample) {
	for _, s := range samples {
		if s.Name == FunnelMetric {
			f.Add(s.Labels["stage"], s.Labels["outcome"], s.Value)
		}
	}
}

// Reached is how many claims a stage saw.
func (f Funnel) Reached(stage string) float64 {
	var n float64
	for _, v := range f[stage] {
		n += v
	}
	return n
}

// Stopped is how many claims a stage did not pass on (answered itself).
func (f Funnel) Stopped(stage string) float64 {
	var n float64
	for o, v := range f[stage] {
		if !Passing(o) {
			n += v
		}
	}
	return n
}

// Minus returns f - g, stage by stage and outcome by outcome: the claims
// counted between two scrapes.
func (f Funnel) Minus(g Funnel) Funnel {
	out := Funnel{}
	for stage, outcomes := range f {
		for o, v := range outcomes {
			out.Add(stage, o, v-g[stage][o])
		}
	}
	return out
}

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Sum adds the values of every sample named name.
func Sum(samples []Sample, name string) float64 {
	var n float64
	for _, s := range samples {
		if s.Name == name {
			n += s.Value
		}
	}
	return n
}

// Scrape reads the /metrics of the process serving HTTP at addr.
func Scrape(ctx context.Context, addr string) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, ScrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, res.Status)
	}
	return ParseMetrics(res.Body)
}

// ParseMetrics reads the Prometheus text format.
func ParseMetrics(r io.Reader) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if s, ok := parseSample(line); ok {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// parseSample splits `name{a="x",b="y"} 12` into its parts. Label values
// with escaped quotes are not needed here and not supported.
func parseSample(line string) (Sample, bool) {
	var labels map[string]string
	name, rest, hasLabels := strings.Cut(line, "{")
	if hasLabels {
		var body string
		var ok bool
		body, rest, ok = strings.Cut(rest, "}")
		if !ok {
			return Sample{}, false
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
		return Sample{}, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return Sample{}, false
	}
	return Sample{Name: strings.TrimSpace(name), Labels: labels, Value: v}, true
}
