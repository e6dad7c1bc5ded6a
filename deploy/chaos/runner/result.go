package runner

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flashd/flashd/deploy/chaos/check"
)

// Summary is the run in a few lines: the faults with availability and
// recovery, then the checker's summary.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %s of workload, %d faults injected, finished in %s\n",
		r.Config.Seed, r.Config.Duration, len(r.Faults), r.Elapsed.Round(time.Second))
	if len(r.Faults) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tFAULT\tLASTED\tCALLS\tANSWERED\tGRANTED\tLONGEST OUTAGE\tRECOVERY\tERROR")
		for _, f := range r.Faults {
			rec := "-"
			if f.Recovery >= 0 {
				rec = dur(f.Recovery)
			}
			errText := f.Err
			if errText == "" {
				errText = "-"
			}
			fmt.Fprintf(tw, "%.1fs\t%s\t%s\t%d\t%.1f%%\t%d\t%s\t%s\t%s\n", seconds(f.Injected), f.Resolved,
				dur(f.Healed-f.Injected), f.Calls, 100*f.Availability(), f.Granted, dur(f.Outage), rec, errText)
		}
		tw.Flush()
	}
	if !r.Recovered {
		fmt.Fprintf(&b, "NOT RECOVERED: no claim granted within %s of the last heal\n", r.Config.RecoveryTimeout)
	}
	b.WriteString(r.Report.Summary())
	if r.OK() {
		b.WriteString("result: PASS\n")
	} else {
		b.WriteString("result: FAIL\n")
	}
	return b.String()
}

func dur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// WriteArtifacts writes the run into dir: the checker's files (history,
// final state, report, porcupine visualisations of illegal items), the
// schedule and fault results (faults.json) and summary.txt.
func (r *Result) WriteArtifacts(dir string) ([]string, error) {
	files, err := check.WriteArtifacts(dir, r.History, r.Final, r.Report)
	if err != nil {
		return files, err
	}
	for _, a := range []struct {
		name string
		v    any
	}{{"faults.json", r}, {"run-summary.txt", r.Summary()}} {
		path := filepath.Join(dir, a.name)
		if err := check.WriteFile(path, a.v); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}
