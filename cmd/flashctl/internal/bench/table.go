package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable writes the report for a person: the runs' throughput and
// latency, answers by reason, the funnel, CPU per answer, the sell-out,
// and the comparisons.
func (rep *Report) WriteTable(out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	left := func(format string, args ...any) {
		// A line outside the columns: flush the table first.
		w.Flush()
		fmt.Fprintf(out, format+"\n", args...)
	}
	m := rep.Machine
	left("flashctl bench · workload %s · %s", rep.Workload, rep.System)
	if rep.Client != "" {
		left("  %s", rep.Client)
	}
	left("machine: %d CPUs, load average %.2f at the start, %.2f at the end%s", m.CPUs, m.LoadAverageStart[0], m.LoadAverageEnd[0], shared(m))
	left("")
	p("%-20s\t%-14s\tclaims/s\tgranted/s\tp50\tp90\tp99\tp99.9\tmax\terrors\t", "run", "load")
	for _, r := range rep.Runs {
		p("%-20s\t%-14s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t", r.Name, loadOf(r), count(int64(r.AnswersPerSecond)), count(int64(r.GrantedPerSecond)),
			ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.P999), ms(r.Latency.Max), count(r.Errors))
	}
	left("")
	left("answers by reason (after the warm-up):")
	for _, r := range rep.Runs {
		left("  %-20s %s", r.Name, reasons(r.Answers))
		if r.FirstError != "" {
			left("  %-20s first error: %s", "", r.FirstError)
		}
		if r.Unsent > 0 {
			left("  %-20s %s claims were due and never sent: every one of %d slots was in flight (the system fell behind the rate)", "", count(r.Unsent), r.InFlightMax)
		}
		if r.OpenLoop != nil {
			left("  %-20s open loop: sent %s after the intended time on average, %s at most (inside the latencies)", "", ms(r.OpenLoop.LagMeanMs), ms(r.OpenLoop.LagMaxMs))
		}
	}
	left("")
	left("CPU per answer (microseconds of CPU, by process; the machine's cores are shared by all of them):")
	for _, r := range rep.Runs {
		var parts []string
		for _, g := range slices.Sorted(maps.Keys(r.CPUPerAnswer)) {
			parts = append(parts, fmt.Sprintf("%s %sµs", g, count(int64(r.CPUPerAnswer[g]))))
		}
		left("  %-20s %s = %sµs", r.Name, strings.Join(parts, " + "), count(int64(r.CPUTotal)))
	}
	header := false
	for _, r := range rep.Runs {
		if r.Store == nil {
			continue
		}
		if !header {
			header = true
			left("")
			left("store (what the leader proposed in the run: the front doors' coalescing):")
		}
		what := "claims"
		if r.Workload == WorkloadCards {
			what = "draws"
		}
		left("  %-20s %s batches (log entries) of %.1f %s on average", r.Name, count(int64(r.Store.Batches)), r.Store.ClaimsPerBatch, what)
	}
	for _, r := range rep.Runs {
		if len(r.Funnel) == 0 {
			continue
		}
		left("")
		left("funnel of %s (front doors, this run):", r.Name)
		p("  %-34s\treached\tstopped\t  %-40s\t", "stage", "")
		for _, f := range r.Funnel {
			p("  %-34s\t%s\t%s\t  %-40s\t", f.Title, count(int64(f.Reached)), count(int64(f.Stopped)), outcomes(f.Outcomes))
		}
		w.Flush()
	}
	for _, r := range rep.Runs {
		s := r.Sellout
		if s == nil {
			continue
		}
		left("")
		left("sell-out of %s: %s units, %s granted; last grant at %.2fs, first SOLD_OUT at %.2fs", r.Name, count(s.Stock), count(s.Granted), s.SoldOutSeconds, s.FirstSoldOutSeconds)
		if a := s.After; a != nil {
			line := fmt.Sprintf("  after it (%.1fs): %s SOLD_OUT answers, %s/s", a.Seconds, count(a.Rejections), count(int64(a.PerSecond)))
			if a.PerServerCore > 0 {
				line += fmt.Sprintf(", %s per second of server CPU (%.2f CPU-s)", count(int64(a.PerServerCore)), a.ServerCPUSeconds)
			}
			if a.StoreBatches >= 0 {
				line += fmt.Sprintf(", %s store batches", count(int64(a.StoreBatches)))
			}
			left("%s", line)
		} else {
			left("  not sold out long enough before the end to measure the refusals after it")
		}
	}
	if len(rep.Checks) > 0 {
		left("")
		left("comparisons (same bench, same machine, one run after another):")
		p("  %-58s\tmeasured\ttarget\t%-8s\t", "", "")
		for _, c := range rep.Checks {
			p("  %-58s\t%s\t%s\t%-8s\t", c.Name, value(c), c.Target, verdict(c))
		}
		w.Flush()
		for _, c := range rep.Checks {
			left("  · %s: %s", c.Name, c.Detail)
		}
	}
	for _, r := range rep.Runs {
		for _, f := range r.Profiles {
			left("profile: %s", f)
		}
	}
	for _, n := range rep.Notes {
		left("note: %s", n)
	}
	return w.Flush()
}

// shared warns that a busy machine makes every figure noisy.
func shared(m Machine) string {
	if busy := max(m.LoadAverageStart[0], m.LoadAverageEnd[0]); busy > 0.5*float64(m.CPUs) {
		return " (the machine was busy with other work: figures are noisy)"
	}
	return ""
}

func loadOf(r *RunReport) string {
	if r.Mode == modeOpen {
		return fmt.Sprintf("open %s/s", count(int64(r.Rate)))
	}
	return fmt.Sprintf("closed %d", r.Concurrency)
}

func reasons(m map[string]int64) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			return int(m[b] - m[a])
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %s", k, count(m[k])))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " · ")
}

func outcomes(m map[string]float64) string {
	ints := map[string]int64{}
	for k, v := range m {
		if v > 0 {
			ints[k] = int64(v)
		}
	}
	return reasons(ints)
}

func value(c Check) string {
	switch c.Unit {
	case "x":
		return fmt.Sprintf("%.2fx", c.Value)
	case "ms":
		return ms(c.Value)
	}
	return count(int64(c.Value)) + " " + c.Unit
}

func verdict(c Check) string {
	switch {
	case c.Met == nil:
		return ""
	case *c.Met:
		return "met"
	}
	return "NOT MET"
}
