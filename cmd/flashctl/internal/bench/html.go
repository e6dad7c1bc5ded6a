package bench

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// The HTML report is one self-contained page: inline CSS, charts drawn
// here as inline SVG, and the JSON document embedded. It loads nothing,
// so it opens offline, from a mail attachment or a CI artefact alike.

// WriteHTML writes the report as a self-contained HTML page.
func (rep *Report) WriteHTML(w io.Writer) error {
	doc, err := json.Marshal(rep) // escapes <, > and &: safe inside <script>
	if err != nil {
		return fmt.Errorf("write the HTML report: %w", err)
	}
	page := htmlPage{Report: rep, JSON: template.JS(doc), Shared: shared(rep.Machine)}
	page.Comparison = barChart(rep)
	for _, r := range rep.Runs {
		page.Runs = append(page.Runs, htmlRun{Run: r, Load: loadOf(r), Reasons: reasons(r.Answers), Charts: runCharts(r)})
	}
	if err := pageTemplate.Execute(w, page); err != nil {
		return fmt.Errorf("write the HTML report: %w", err)
	}
	return nil
}

type htmlPage struct {
	Report     *Report
	JSON       template.JS
	Shared     string
	Comparison template.HTML
	Runs       []htmlRun
}

type htmlRun struct {
	Run     *RunReport
	Load    string
	Reasons string
	Charts  []template.HTML
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":    ms,
	"count": func(v any) string { return count(toInt64(v)) },
	"value": value,
	"verdict": func(c Check) string {
		return verdict(c)
	},
	"outcomes": outcomes,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flashctl bench · {{.Report.Workload}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1340px; padding: 0 16px; color: #1d232a; background: #fbfbfc; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde3; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
.meta { color: #56606b; }
.warn { color: #9a5b00; }
table { border-collapse: collapse; margin: 6px 0 12px; background: #fff; }
th, td { border: 1px solid #d8dde3; padding: 4px 9px; text-align: right; white-space: nowrap; }
td.wrap { white-space: normal; }
th { background: #eef1f4; font-weight: 600; }
td.l, th.l { text-align: left; }
.met { color: #17753a; font-weight: 600; }
.notmet { color: #b3261e; font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px; }
.chart { background: #fff; border: 1px solid #d8dde3; border-radius: 4px; padding: 6px; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #39424c; }
svg .title { font-size: 13px; font-weight: 600; fill: #1d232a; }
svg .grid { stroke: #e6e9ed; stroke-width: 1; }
svg .axis { stroke: #8a949e; stroke-width: 1; }
svg .empty { fill: #8a949e; font-style: italic; }
</style>
</head>
<body>
<h1>flashctl bench · workload {{.Report.Workload}}</h1>
<div class="meta">{{.Report.Started.Format "2006-01-02 15:04:05 UTC"}} · {{.Report.System}}</div>
{{with .Report.Client}}<div class="meta">{{.}}</div>{{end}}
<div class="meta">machine: {{.Report.Machine.CPUs}} CPUs, {{.Report.Machine.GOOS}}/{{.Report.Machine.GOARCH}}, {{.Report.Machine.GoVersion}}, load average {{printf "%.2f" (index .Report.Machine.LoadAverageStart 0)}} at the start, {{printf "%.2f" (index .Report.Machine.LoadAverageEnd 0)}} at the end<span class="warn">{{.Shared}}</span></div>
<div class="meta">command: <code>{{.Report.Command}}</code></div>

<h2>Runs</h2>
<table>
<tr><th class="l">run</th><th class="l">load</th><th>claims/s</th><th>granted/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th></tr>
{{range .Runs}}<tr><td class="l">{{.Run.Name}}</td><td class="l">{{.Load}}</td><td>{{count .Run.AnswersPerSecond}}</td><td>{{count .Run.GrantedPerSecond}}</td><td>{{ms .Run.Latency.P50}}</td><td>{{ms .Run.Latency.P90}}</td><td>{{ms .Run.Latency.P99}}</td><td>{{ms .Run.Latency.P999}}</td><td>{{ms .Run.Latency.Max}}</td><td>{{count .Run.Errors}}</td></tr>
{{end}}</table>
<div class="chart" style="max-width: 760px">{{.Comparison}}</div>

{{if .Report.Checks}}<h2>Comparisons and targets</h2>
<p class="meta">Measured in this bench on this machine, one run after another. Targets are the issue's; they are reported, not asserted.</p>
<table>
<tr><th class="l">comparison</th><th>measured</th><th>target</th><th class="l"></th><th class="l">detail</th></tr>
{{range .Report.Checks}}<tr><td class="l">{{.Name}}</td><td>{{value .}}</td><td>{{.Target}}</td><td class="l {{if .Met}}{{if eq (verdict .) "met"}}met{{else}}notmet{{end}}{{end}}">{{verdict .}}</td><td class="l wrap">{{.Detail}}</td></tr>
{{end}}</table>{{end}}

{{range .Runs}}<h2>{{.Run.Title}} <span class="meta mono">({{.Run.Name}})</span></h2>
<div class="meta">{{.Run.Server}}</div>
<div class="meta">{{.Load}} · {{printf "%.1f" .Run.DurationSeconds}}s measured after a {{printf "%.1f" .Run.WarmupSeconds}}s warm-up · {{count .Run.Sent}} claims sent · answers: {{.Reasons}}</div>
{{if .Run.FirstError}}<div class="warn">first error: {{.Run.FirstError}}</div>{{end}}
{{if .Run.Unsent}}<div class="warn">{{count .Run.Unsent}} claims were due and never sent: every slot was in flight.</div>{{end}}
{{with .Run.Sellout}}<div>sell-out: {{count .Stock}} units, {{count .Granted}} granted, last grant at {{printf "%.2f" .SoldOutSeconds}}s, first SOLD_OUT at {{printf "%.2f" .FirstSoldOutSeconds}}s{{with .After}}; after it, {{count .Rejections}} SOLD_OUT answers in {{printf "%.1f" .Seconds}}s ({{count .PerSecond}}/s{{if .PerServerCore}}, {{count .PerServerCore}} per server CPU-second{{end}}{{if ge .StoreBatches 0.0}}, {{count .StoreBatches}} store batches{{end}}){{end}}</div>{{end}}
<div class="charts">{{range .Charts}}<div class="chart">{{.}}</div>{{end}}</div>
{{if .Run.Funnel}}<h3>Funnel (front doors, this run)</h3>
<table><tr><th class="l">stage</th><th>reached</th><th>stopped</th><th class="l">outcomes</th></tr>
{{range .Run.Funnel}}<tr><td class="l">{{.Title}}</td><td>{{count .Reached}}</td><td>{{count .Stopped}}</td><td class="l wrap">{{outcomes .Outcomes}}</td></tr>
{{end}}</table>{{end}}
{{if .Run.CPU}}<div class="meta">CPU seconds: {{range $g, $v := .Run.CPU}}{{$g}} {{printf "%.2f" $v}} · {{end}} per answer (µs): {{range $g, $v := .Run.CPUPerAnswer}}{{$g}} {{count $v}} · {{end}}</div>{{end}}
{{with .Run.Store}}<div class="meta">store: {{count .Batches}} batches (log entries) proposed, {{printf "%.1f" .ClaimsPerBatch}} claims per batch on average</div>{{end}}
{{range .Run.Profiles}}<div class="meta mono">profile: {{.}}</div>{{end}}
{{end}}
{{range .Report.Notes}}<p class="meta">note: {{.}}</p>{{end}}
<script type="application/json" id="report">{{.JSON}}</script>
</body>
</html>
`))

func toInt64(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case int:
		return int64(v)
	case float64:
		return int64(math.Round(v))
	}
	return 0
}

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartW, chartH               = 620, 260
	padLeft, padRight            = 62, 14
	padTop, padBottom            = 46, 30
	gridLines                    = 5
	legendStep                   = 108
	maxLegendPerRow              = 5
	throughputColor, grantColor  = "#3b6fb6", "#2e8b57"
	stockColor                   = "#8e44ad"
	latencyColors                = "#2e8b57 #3b6fb6 #d98c1f #c0392b #6b4c9a"
	stageColors                  = "#7f8c8d #c0392b #d98c1f #e67e22 #8e44ad #3b6fb6 #16a085 #2e8b57"
	barColorFlashd, barColorBase = "#3b6fb6", "#9aa6b2"
)

// series is one line of a chart.
type series struct {
	name, color string
	xs, ys      []float64
}

// runCharts are a run's four charts over time.
func runCharts(r *RunReport) []template.HTML {
	var xs []float64
	for _, p := range r.Series {
		xs = append(xs, p.T)
	}
	pick := func(f func(Point) float64) []float64 {
		out := make([]float64, len(r.Series))
		for i, p := range r.Series {
			out[i] = f(p)
		}
		return out
	}
	throughput := lineChart("Throughput (answers per second)", "per s", "no answers", false, []series{
		{"answers", throughputColor, xs, pick(func(p Point) float64 { return float64(p.Answers) })},
		{"granted", grantColor, xs, pick(func(p Point) float64 { return float64(p.Granted) })},
	})
	colors := strings.Fields(latencyColors)
	latency := lineChart("Latency percentiles (ms, log scale)", "ms", "no answers", true, []series{
		{"p50", colors[0], xs, pick(func(p Point) float64 { return p.P50 })},
		{"p90", colors[1], xs, pick(func(p Point) float64 { return p.P90 })},
		{"p99", colors[2], xs, pick(func(p Point) float64 { return p.P99 })},
		{"p99.9", colors[3], xs, pick(func(p Point) float64 { return p.P999 })},
		{"max", colors[4], xs, pick(func(p Point) float64 { return p.Max })},
	})
	var stages []series
	stageColor := strings.Fields(stageColors)
	for i, s := range localcluster.FunnelStages {
		ys := pick(func(p Point) float64 { return p.Stopped[s.Name] })
		if maxOf(ys) > 0 {
			stages = append(stages, series{s.Name, stageColor[i%len(stageColor)], xs, ys})
		}
	}
	funnel := lineChart("Funnel: claims each stage answered itself, per second", "per s", funnelEmpty(r), false, stages)
	var sx, sy []float64
	if r.StockAtStart != nil {
		sx, sy = append(sx, 0), append(sy, float64(*r.StockAtStart))
	}
	for _, p := range r.Series {
		if p.Stock != nil {
			sx, sy = append(sx, p.T), append(sy, float64(*p.Stock))
		}
	}
	var stock template.HTML
	if len(sx) > 0 {
		stock = lineChart("Stock remaining (units)", "units", "", false, []series{{"available", stockColor, sx, sy}})
	} else {
		stock = lineChart("Stock remaining (units)", "units", "stock not read (no store or Redis to ask)", false, nil)
	}
	return []template.HTML{throughput, latency, funnel, stock}
}

// funnelEmpty says why a run's funnel chart has no line.
func funnelEmpty(r *RunReport) string {
	if len(r.Funnel) == 0 {
		return "no funnel: not a front door, or its metrics not given"
	}
	return "every claim passed every stage to the store"
}

// lineChart draws series over time (x in seconds) as an SVG.
func lineChart(title, unit, empty string, logY bool, lines []series) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text class="title" x="%d" y="16">%s</text>`, padLeft, template.HTMLEscapeString(title))
	var xMax, yMax float64
	yMin := math.Inf(1)
	for _, l := range lines {
		xMax = max(xMax, maxOf(l.xs))
		yMax = max(yMax, maxOf(l.ys))
		for _, y := range l.ys {
			if y > 0 {
				yMin = min(yMin, y)
			}
		}
	}
	points := 0
	for _, l := range lines {
		points += len(l.xs)
	}
	if points == 0 || xMax == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%d" y="%d" text-anchor="middle">%s</text></svg>`, chartW/2, chartH/2, template.HTMLEscapeString(empty))
		return template.HTML(b.String())
	}
	if yMax == 0 {
		yMax, yMin = 1, 1 // a flat line at zero
	}
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBottom)
	x := func(v float64) float64 { return float64(padLeft) + v/xMax*plotW }
	var y func(float64) float64
	var ticks []float64
	if logY {
		lo := math.Pow(10, math.Floor(math.Log10(yMin)))
		hi := math.Pow(10, math.Ceil(math.Log10(yMax)))
		if hi <= lo {
			hi = lo * 10
		}
		y = func(v float64) float64 {
			v = max(v, lo)
			return float64(padTop) + plotH - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*plotH
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			ticks = append(ticks, t)
		}
	} else {
		step := niceStep(yMax / gridLines)
		top := math.Ceil(yMax/step) * step
		y = func(v float64) float64 { return float64(padTop) + plotH - v/top*plotH }
		for t := 0.0; t <= top*1.0001; t += step {
			ticks = append(ticks, t)
		}
	}
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padLeft, chartW-padRight, y(t), y(t))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padLeft-6, y(t)+4, axisLabel(t))
	}
	xStep := niceStep(xMax / 8)
	for t := 0.0; t <= xMax*1.0001; t += xStep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ss</text>`, x(t), chartH-padBottom+16, axisLabel(t))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padLeft, chartW-padRight, chartH-padBottom, chartH-padBottom)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padLeft, padLeft, padTop, chartH-padBottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, padLeft-6, padTop-8, template.HTMLEscapeString(unit))
	for i, l := range lines {
		lx := padLeft + (i%maxLegendPerRow)*legendStep
		ly := 30 + (i/maxLegendPerRow)*12
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/><text x="%d" y="%d">%s</text>`,
			lx, ly-4, l.color, lx+18, ly+1, template.HTMLEscapeString(l.name))
		var pts []string
		for k := range l.xs {
			if logY && l.ys[k] <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(l.xs[k]), y(l.ys[k])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" stroke-linejoin="round" points="%s"/>`, l.color, strings.Join(pts, " "))
		if len(pts) == 1 {
			var px, py float64
			fmt.Sscanf(pts[0], "%f,%f", &px, &py)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, px, py, l.color)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// barChart compares the runs by their headline figure: granted claims per
// second, or for a sell-out the refusals per second after it.
func barChart(rep *Report) template.HTML {
	what, figure := headline(rep.Workload)
	title := strings.ToUpper(what[:1]) + what[1:] + ", by run"
	runs := rep.Runs
	const rowH, labelW = 26, 170
	h := padTop + rowH*len(runs) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text class="title" x="10" y="16">%s</text>`, template.HTMLEscapeString(title))
	var most float64
	for _, r := range runs {
		most = max(most, figure(r))
	}
	for i, r := range runs {
		yy := padTop - 14 + i*rowH
		w := 0.0
		if most > 0 {
			w = figure(r) / most * float64(chartW-labelW-90)
		}
		color := barColorBase
		if strings.HasPrefix(r.Name, runFlashd) {
			color = barColorFlashd
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-8, yy+14, template.HTMLEscapeString(r.Name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="18" fill="%s"/>`, labelW, yy, w, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s/s</text>`, float64(labelW)+w+6, yy+14, count(int64(figure(r))))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// axisLabel writes a tick value short: 0.1, 5, 250, 12k, 1.5M.
func axisLabel(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e6), ".0") + "M"
	case v >= 1e4:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "k"
	case v >= 1:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}
