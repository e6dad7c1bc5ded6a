package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// Report is every figure of one `flashctl bench`: what ran, on what
// machine, each run's figures, and the comparisons between runs. It is the
// JSON document of -o json, and what the table and the HTML page show.
type Report struct {
	Command  string       `json:"command"`
	Started  time.Time    `json:"started"`
	Machine  Machine      `json:"machine"`
	Workload string       `json:"workload"`
	System   string       `json:"system"` // what served flashd's runs
	Client   string       `json:"client"` // how the client library sent the claims
	Runs     []*RunReport `json:"runs"`
	Checks   []Check      `json:"checks"` // ratios between runs and the targets
	Notes    []string     `json:"notes,omitempty"`
}

// Machine is where the figures were measured, and how busy it was.
type Machine struct {
	CPUs             int        `json:"cpus"`
	GOOS             string     `json:"goos"`
	GOARCH           string     `json:"goarch"`
	GoVersion        string     `json:"go_version"`
	LoadAverageStart [3]float64 `json:"load_average_start"`
	LoadAverageEnd   [3]float64 `json:"load_average_end"`
}

// RunReport is one run: one system (flashd, a baseline) under one load.
type RunReport struct {
	Name        string   `json:"name"`  // flashd, flashd-coalesce-off, flashd-half-rate, echo, redis-lua-always, redis-lua-everysec
	Title       string   `json:"title"` // what a person reads
	Server      string   `json:"server"`
	Workload    string   `json:"workload"`
	Mode        string   `json:"mode"` // closed or open (loop)
	Concurrency int      `json:"concurrency,omitempty"`
	Rate        float64  `json:"rate,omitempty"`          // open loop: claims per second offered
	InFlightMax int      `json:"in_flight_max,omitempty"` // open loop
	Items       []string `json:"items"`
	Users       int64    `json:"users"` // 0: a new user for every claim

	WarmupSeconds   float64 `json:"warmup_seconds"`
	DurationSeconds float64 `json:"duration_seconds"` // asked for
	ElapsedSeconds  float64 `json:"elapsed_seconds"`  // from the end of the warm-up to the last answer

	Sent             int64            `json:"sent"` // claims sent, warm-up included
	Unsent           int64            `json:"unsent,omitempty"`
	WarmupAnswers    int64            `json:"warmup_answers"`
	Answered         int64            `json:"answered"` // answers recorded (after the warm-up)
	Answers          map[string]int64 `json:"answers"`  // by reason: granted, sold_out, limit_reached, rate_limited, timeout, ...
	Errors           int64            `json:"errors"`   // answers that are neither a grant nor a business refusal
	FirstError       string           `json:"first_error,omitempty"`
	AnswersPerSecond float64          `json:"answers_per_second"`
	GrantedPerSecond float64          `json:"granted_per_second"`
	Latency          Latency          `json:"latency"`         // every answer
	GrantedLatency   Latency          `json:"granted_latency"` // grants only

	OpenLoop *OpenLoop          `json:"open_loop,omitempty"`
	Store    *StoreFigures      `json:"store,omitempty"` // what the store nodes received in the run
	Sellout  *Sellout           `json:"sellout,omitempty"`
	Funnel   []FunnelRow        `json:"funnel,omitempty"` // front doors, this run only
	CPU      map[string]float64 `json:"cpu_seconds"`      // by process group: bench, front doors, stores, echo, redis-server
	// CPUPerAnswer is CPU microseconds per answer, by process group: a
	// figure less at the mercy of a shared machine than the rate.
	CPUPerAnswer map[string]float64 `json:"cpu_us_per_answer"`
	CPUTotal     float64            `json:"cpu_us_per_answer_total"` // every process group together
	Client       *ClientStats       `json:"client,omitempty"`
	Series       []Point            `json:"series"`
	StockAtStart *int64             `json:"stock_at_start,omitempty"` // units left when the measurement started
	Profiles     []string           `json:"profiles,omitempty"`
}

// Latency is a distribution in milliseconds, from an HdrHistogram (3
// significant digits).
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// OpenLoop is what an open loop adds: how late the load generator itself
// sent (that lateness is inside the latencies).
type OpenLoop struct {
	LagMeanMs float64 `json:"send_lag_mean_ms"`
	LagMaxMs  float64 `json:"send_lag_max_ms"`
}

// StoreFigures is the claim batches the store leader proposed during a
// run, from its metrics: how well the front doors coalesced.
type StoreFigures struct {
	Batches        float64 `json:"batches"`
	Claims         float64 `json:"claims"`
	ClaimsPerBatch float64 `json:"claims_per_batch"`
}

// Sellout is the sell-out workload's figures. Times are from the first
// claim sent.
type Sellout struct {
	Stock               int64    `json:"stock"`
	Granted             int64    `json:"granted"`
	SoldOutSeconds      float64  `json:"sold_out_seconds"`       // the last grant
	FirstSoldOutSeconds float64  `json:"first_sold_out_seconds"` // the first SOLD_OUT answer
	After               *Refusal `json:"after,omitempty"`        // from settle after the first SOLD_OUT to the end
}

// Refusal is the phase after the sell-out, when every claim is refused.
type Refusal struct {
	Seconds    float64 `json:"seconds"`
	Answers    int64   `json:"answers"`
	Rejections int64   `json:"rejections"` // SOLD_OUT answers
	PerSecond  float64 `json:"rejections_per_second"`
	// ServerCPUSeconds is the CPU the serving processes (front doors,
	// Redis) used in the phase; PerServerCore is rejections per second of
	// it: per core, whatever else the machine runs.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	PerServerCore    float64 `json:"rejections_per_server_core_second"`
	// StoreBatches is the claim batches the store nodes received in the
	// phase (-1: not measured).
	StoreBatches float64 `json:"store_batches"`
}

// FunnelRow is one stage of the front doors' funnel in a run.
type FunnelRow struct {
	Stage    string             `json:"stage"`
	Title    string             `json:"title"`
	Reached  float64            `json:"reached"`
	Stopped  float64            `json:"stopped"`
	Outcomes map[string]float64 `json:"outcomes"`
}

// ClientStats is what the client library did (client.Stats).
type ClientStats struct {
	Calls           uint64 `json:"calls"`
	Attempts        uint64 `json:"attempts"`
	Retries         uint64 `json:"retries"`
	Dropped         uint64 `json:"dropped"`
	BudgetExhausted uint64 `json:"budget_exhausted"`
}

// Point is one second of a run, by answer time.
type Point struct {
	T       float64          `json:"t"` // seconds after the warm-up, at the window's end
	Answers int64            `json:"answers"`
	Granted int64            `json:"granted"`
	Reasons map[string]int64 `json:"reasons"`
	P50     float64          `json:"p50_ms"`
	P90     float64          `json:"p90_ms"`
	P99     float64          `json:"p99_ms"`
	P999    float64          `json:"p99_9_ms"`
	Max     float64          `json:"max_ms"`
	// Stopped is the claims each funnel stage answered itself in this
	// second (front doors only).
	Stopped map[string]float64 `json:"stopped,omitempty"`
	Stock   *int64             `json:"stock,omitempty"` // units left at the window's end, when known
}

// Check is a comparison or a target of the issue: measured, and whether
// it is met. Targets are reported, never asserted.
type Check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"` // "x" for a ratio
	Target string  `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
	Detail string  `json:"detail"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return round3(float64(us) / 1000) }
	return Latency{
		Count: h.TotalCount(), Mean: round3(h.Mean() / 1000),
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// fill puts what the recorder holds into r.
func (r *RunReport) fill(rec recorded, d driven) {
	r.Sent, r.Unsent, r.WarmupAnswers = d.sent, d.unsent, rec.warmup
	r.ElapsedSeconds = round3(d.elapsed.Seconds())
	r.Answers = rec.answers
	r.FirstError = rec.firstErr
	for reason, n := range rec.answers {
		r.Answered += n
		if isError(reason) {
			r.Errors += n
		}
	}
	if s := d.elapsed.Seconds(); s > 0 {
		r.AnswersPerSecond = math.Round(float64(r.Answered) / s)
		r.GrantedPerSecond = math.Round(float64(rec.answers[reasonGranted]) / s)
	}
	r.Latency, r.GrantedLatency = latencyOf(rec.all), latencyOf(rec.grants)
	if r.Mode == modeOpen && d.sent > 0 {
		r.OpenLoop = &OpenLoop{LagMeanMs: round3(float64(d.lagSum.Microseconds()) / float64(d.sent) / 1000), LagMaxMs: round3(float64(d.lagMax.Microseconds()) / 1000)}
	}
	for i, w := range rec.windows {
		if time.Duration(i)*windowLength >= time.Duration(r.DurationSeconds*float64(time.Second)) {
			break // the tail: answers to claims sent before the end (in the totals)
		}
		p := Point{T: float64(i + 1), Reasons: w.answers, Granted: w.answers[reasonGranted]}
		for _, n := range w.answers {
			p.Answers += n
		}
		l := latencyOf(w.latency)
		p.P50, p.P90, p.P99, p.P999, p.Max = l.P50, l.P90, l.P99, l.P999, l.Max
		r.Series = append(r.Series, p)
	}
}

// isError says whether an answer is a failure rather than a grant or a
// business refusal (sold out, limit reached): what the table counts as
// errors.
func isError(reason string) bool {
	switch reason {
	case reasonGranted, reasonSoldOut, reasonLimit, reasonRedeemed, "no_draws_left", "no_full_set", "pool_empty":
		return false
	}
	return true
}

// funnelRows turns the funnel counted in a run into rows, in stage order.
func funnelRows(f localcluster.Funnel) []FunnelRow {
	var rows []FunnelRow
	for _, s := range localcluster.FunnelStages {
		if f.Reached(s.Name) == 0 {
			continue
		}
		rows = append(rows, FunnelRow{Stage: s.Name, Title: s.Title, Reached: f.Reached(s.Name), Stopped: f.Stopped(s.Name), Outcomes: f[s.Name]})
	}
	return rows
}

// WriteJSON writes the report as one indented JSON document.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return nil
}

// run returns the run named name, or nil.
func (rep *Report) run(name string) *RunReport {
	i := slices.IndexFunc(rep.Runs, func(r *RunReport) bool { return r.Name == name })
	if i < 0 {
		return nil
	}
	return rep.Runs[i]
}
