package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// sampleReport is a report of a sell-out run and a Redis run, filled the
// way Run fills it: from recorders.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	start := time.Now()
	run := func(name string, granted, soldOut int) *RunReport {
		rec := newRecorder(start)
		for i := range granted {
			rec.record(start.Add(time.Duration(i)*time.Millisecond), time.Duration(i%50+1)*time.Millisecond, reasonGranted, nil)
		}
		for i := range soldOut {
			rec.record(start.Add(time.Second+time.Duration(i)*time.Millisecond), 300*time.Microsecond, reasonSoldOut, nil)
		}
		rec.record(start.Add(2500*time.Millisecond), claimTimeout, reasonTimeout, nil)
		r := &RunReport{Name: name, Title: name + " <title>", Workload: WorkloadSellout, Mode: modeClosed, Concurrency: 64,
			Items: []string{"hot"}, DurationSeconds: 3}
		r.fill(rec.snapshot(), driven{sent: int64(granted + soldOut + 1), elapsed: 3 * time.Second})
		stock := int64(5)
		f := localcluster.Funnel{}
		f.Add("auth", "ok", 100)
		f.Add("cache", "ok", 10)
		f.Add("cache", "sold_out", 90)
		f.Add("store", "granted", 10)
		r.Funnel = funnelRows(f)
		r.addSamples([]sample{{at: start, funnel: localcluster.Funnel{}}, {at: start.Add(time.Second), funnel: f, stock: &stock}})
		r.CPU, r.CPUPerAnswer = map[string]float64{groupBench: 0.5}, map[string]float64{groupBench: 40}
		r.Sellout = &Sellout{Stock: int64(granted), Granted: int64(granted), SoldOutSeconds: 0.9, FirstSoldOutSeconds: 1,
			After: &Refusal{Seconds: 1.5, Rejections: int64(soldOut), PerSecond: float64(soldOut) / 1.5, ServerCPUSeconds: 0.01, PerServerCore: float64(soldOut) / 0.01}}
		return r
	}
	rep := &Report{Command: "flashctl bench --workload sellout", Started: start.UTC(), Workload: WorkloadSellout,
		Machine: Machine{CPUs: 2, LoadAverageStart: [3]float64{3, 2, 1}}, System: "local cluster",
		Client: "client library defaults: claims share ClaimMany calls"}
	rep.Runs = []*RunReport{run(runFlashd, 200, 800), run(runRedisAlways, 200, 400)}
	rep.Checks = checks(rep, Config{Workload: WorkloadSellout})
	return rep
}

func TestReportJSONShape(t *testing.T) {
	rep := sampleReport(t)
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("not one JSON document: %v", err)
	}
	for _, key := range []string{"command", "started", "machine", "workload", "system", "runs", "checks"} {
		if _, ok := doc[key]; !ok {
			t.Errorf("report lacks %q", key)
		}
	}
	runs := doc["runs"].([]any)
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	first := runs[0].(map[string]any)
	for _, key := range []string{"name", "mode", "answers_per_second", "granted_per_second", "latency", "granted_latency",
		"answers", "errors", "funnel", "cpu_seconds", "cpu_us_per_answer", "series", "sellout"} {
		if _, ok := first[key]; !ok {
			t.Errorf("run lacks %q", key)
		}
	}
	lat := first["latency"].(map[string]any)
	for _, key := range []string{"count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms"} {
		if _, ok := lat[key]; !ok {
			t.Errorf("latency lacks %q", key)
		}
	}
	answers := first["answers"].(map[string]any)
	if answers["granted"] != 200.0 || answers["sold_out"] != 800.0 || answers["timeout"] != 1.0 || first["errors"] != 1.0 {
		t.Errorf("answers %v, errors %v: want 200 granted, 800 sold out, 1 timeout (the only error)", answers, first["errors"])
	}
	if got := lat["max_ms"].(float64); got < 9990 || got > 10010 {
		t.Errorf("max latency %vms, want the 10s timeout", got)
	}
	series := first["series"].([]any)
	if len(series) != 3 {
		t.Fatalf("%d points for a 3s run, want 3", len(series))
	}
	p0 := series[0].(map[string]any)
	if p0["answers"] != 200.0 || p0["stopped"].(map[string]any)["cache"] != 90.0 || p0["stock"] != 5.0 {
		t.Errorf("first second %v: want 200 answers, 90 stopped by the cache, 5 units left", p0)
	}
	checks := doc["checks"].([]any)
	if len(checks) == 0 {
		t.Fatal("no checks")
	}
	c := checks[0].(map[string]any)
	if c["name"] != "flashd / Redis-Lua (appendfsync always)" || c["value"] != 2.0 {
		t.Errorf("first check %v: want the Redis ratio of the refusals after sell-out, 2", c)
	}
}

// TestHTMLIsSelfContained: the page loads nothing (no script, style or
// image from anywhere, no URL with a scheme), draws four charts per run
// and carries the JSON document.
func TestHTMLIsSelfContained(t *testing.T) {
	rep := sampleReport(t)
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.Contains(page, "claims share ClaimMany calls") {
		t.Error("page does not say how the client sent the claims")
	}
	for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	svgs, embedded := 0, ""
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "link", "img", "iframe", "object", "embed", "video", "audio":
				t.Errorf("page has a <%s> element", n.Data)
			case "svg":
				svgs++
			case "script":
				for _, a := range n.Attr {
					if a.Key == "src" {
						t.Errorf("script loads %q", a.Val)
					}
				}
				if n.FirstChild != nil {
					embedded = n.FirstChild.Data
				}
			}
			for _, a := range n.Attr {
				if (a.Key == "src" || a.Key == "href" || a.Key == "xlink:href") && a.Val != "" {
					t.Errorf("<%s %s=%q> refers to something to load", n.Data, a.Key, a.Val)
				}
				if strings.Contains(a.Val, "url(") {
					t.Errorf("<%s %s=%q> loads a URL", n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if want := 1 + 4*len(rep.Runs); svgs != want {
		t.Errorf("%d SVG charts, want %d (a comparison, and 4 per run)", svgs, want)
	}
	var back Report
	if err := json.Unmarshal([]byte(embedded), &back); err != nil {
		t.Fatalf("embedded JSON: %v", err)
	}
	if len(back.Runs) != 2 || back.Runs[0].Answered != rep.Runs[0].Answered {
		t.Errorf("embedded JSON holds %d runs, want the report's", len(back.Runs))
	}
	if !strings.Contains(page, "flashd &lt;title&gt;") {
		t.Error("a run's title is not escaped")
	}
}

func TestTableShowsEveryFigure(t *testing.T) {
	rep := sampleReport(t)
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"claims/s", "p99.9", "redis-lua-always", "sold_out 800 · granted 200 · timeout 1",
		"caches (sold out, limit)", "sold_out 90", "sell-out of flashd", "(the machine was busy", "flashd / Redis-Lua (appendfsync always)",
		"claims share ClaimMany calls"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestChecksAgainstTargets(t *testing.T) {
	rep := &Report{Runs: []*RunReport{
		{Name: runFlashd, GrantedPerSecond: 30000, AnswersPerSecond: 30000, CPUTotal: 100},
		{Name: runCoalesceOff, GrantedPerSecond: 1000, CPUTotal: 1000},
		{Name: runEcho, GrantedPerSecond: 50000, AnswersPerSecond: 50000, CPUTotal: 40},
		{Name: runRedisAlways, GrantedPerSecond: 20000, CPUTotal: 250},
		{Name: runHalfRate, Rate: 15000, Latency: Latency{Count: 10, P99: 12.5}},
	}}
	got := map[string]Check{}
	for _, c := range checks(rep, Config{Workload: WorkloadSustained}) {
		got[c.Name] = c
	}
	for name, want := range map[string]struct {
		value float64
		met   bool
	}{
		"flashd / Redis-Lua (appendfsync always)":                    {1.5, false},
		"flashd / echo (one gRPC hop)":                               {0.6, true},
		"coalescing on / off":                                        {30, true},
		"p99 latency at half the maximum sustained rate":             {12.5, false},
		"flashd / Redis-Lua (appendfsync always), by CPU per answer": {2.5, true},
		"flashd / echo (one gRPC hop), by CPU per answer":            {0.4, false},
		"coalescing on / off, by CPU per answer":                     {10, false},
	} {
		c, ok := got[name]
		if !ok || c.Met == nil {
			t.Errorf("no check %q with a target", name)
			continue
		}
		if c.Value != want.value || *c.Met != want.met {
			t.Errorf("%s: %v met %v, want %v met %v", name, c.Value, *c.Met, want.value, want.met)
		}
	}
}

func TestAxisLabels(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.25: "0.25", 5: "5", 2.5: "2.5", 250: "250", 12000: "12k", 1500000: "1.5M"} {
		if got := axisLabel(v); got != want {
			t.Errorf("axisLabel(%v) = %q, want %q", v, got, want)
		}
	}
	for raw, want := range map[float64]float64{0.7: 1, 13: 20, 240: 500, 4000: 5000} {
		if got := niceStep(raw); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", raw, got, want)
		}
	}
}
