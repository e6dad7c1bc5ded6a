package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flashd/flashd/cmd/flashctl/internal/bench"
)

func TestBenchRefusesBadUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--workload", "cards", "--baseline", "echo"}, "the cards workload runs flashd alone"},
		{[]string{"bench", "--workload", "cards", "--draws", "0"}, "--draws 0"},
		{[]string{"bench", "--workload", "lottery"}, `--workload "lottery"`},
		{[]string{"bench", "--coalesce", "maybe"}, `--coalesce "maybe"`},
		{[]string{"bench", "--rate", "100", "--half-rate"}, "--half-rate follows a closed-loop run"},
		{[]string{"bench", "--workload", "sellout", "--half-rate"}, "--half-rate measures latency at a sustainable rate"},
		{[]string{"bench", "--frontdoor", "127.0.0.1:1", "--coalesce", "off"}, "--coalesce off needs the bench's own cluster"},
		{[]string{"bench", "--baseline", "etcd"}, `--baseline "etcd"`},
		{[]string{"bench", "--duration", "1h"}, "--duration 1h0m0s"},
		{[]string{"bench", "--rate", "100", "--concurrency", "5"}, "none of the others can be"},
	} {
		r := flashctl(t, nil, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, exitUsage, c.want)
		}
	}
}

// TestBenchRealRun runs the real flashctl bench with small numbers: its
// own 3-node cluster and front door (the real flashd binary), the sell-out
// workload, the echo baseline, coalescing off, and the Redis-Lua baseline
// when redis-server is installed. It checks the figures hang together
// (never how large they are: that is the bench's business, not a test's).
func TestBenchRealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes")
	}
	bin := buildBinaries(t)
	const stock = 300
	report := filepath.Join(t.TempDir(), "report.html")
	args := []string{"bench", "--workload", "sellout", "--stock", "300", "--duration", "2s", "--concurrency", "32",
		"--baseline", "echo", "--coalesce", "off", "--report", report, "--keep", "-o", "json"}
	_, redisErr := exec.LookPath("redis-server")
	if redisErr == nil {
		args = append(args, "--baseline", "redis-lua")
	}
	rep := runFlashctlBench(t, bin, args...)

	runs := map[string]*bench.RunReport{}
	for _, r := range rep.Runs {
		runs[r.Name] = r
	}
	want := []string{"flashd", "flashd-coalesce-off", "echo"}
	if redisErr == nil {
		want = append(want, "redis-lua-always", "redis-lua-everysec")
	}
	if len(rep.Runs) != len(want) {
		t.Fatalf("%d runs, want %v", len(rep.Runs), want)
	}
	for _, name := range want {
		r := runs[name]
		if r == nil {
			t.Fatalf("no run %s", name)
		}
		if r.Answered == 0 || r.Latency.Count != r.Answered || r.Latency.P50 <= 0 || r.Latency.Max < r.Latency.P99 || len(r.Series) == 0 {
			t.Errorf("%s: %d answers, latency %+v, %d points", name, r.Answered, r.Latency, len(r.Series))
		}
		if r.Errors != 0 {
			t.Errorf("%s: %d errors (first: %s)", name, r.Errors, r.FirstError)
		}
		if name == "echo" {
			if r.Answers["granted"] != r.Answered {
				t.Errorf("echo: answers %v, want every one granted", r.Answers)
			}
			continue
		}
		// Exactly the stock is granted, once, and the rest refused.
		s := r.Sellout
		if s == nil || s.Granted != stock || r.Answers["granted"] != stock || s.FirstSoldOutSeconds <= 0 || r.Answers["sold_out"] == 0 {
			t.Errorf("%s: sell-out %+v, answers %v; want all %d units granted, then SOLD_OUT", name, s, r.Answers, stock)
		}
	}
	f := runs["flashd"]
	stages := map[string]bench.FunnelRow{}
	for _, row := range f.Funnel {
		stages[row.Stage] = row
	}
	if stages["cache"].Outcomes["sold_out"] == 0 || stages["store"].Outcomes["granted"] < stock {
		t.Errorf("funnel %+v: want the caches refusing SOLD_OUT and the store granting %d", f.Funnel, stock)
	}
	if f.CPU["front doors"] <= 0 || f.CPU["store leader"] <= 0 || f.CPU["store followers"] <= 0 || f.CPU["bench"] <= 0 {
		t.Errorf("CPU %v: want every process group measured", f.CPU)
	}

	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(page, []byte("http://")) || bytes.Contains(page, []byte("https://")) || !bytes.Contains(page, []byte("<svg")) {
		t.Errorf("report %s: want charts and no URL", report)
	}
}

// TestBenchCardsRealRun runs the cards workload on the bench's own
// cluster: users granted draw chances draw and redeem, and no more cards
// are drawn than chances were granted, no more rewards given than the pool.
func TestBenchCardsRealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes")
	}
	const users, draws, pool = 100, 6, 20
	rep := runFlashctlBench(t, buildBinaries(t), "bench", "--workload", "cards", "--users", "100", "--draws", "6", "--stock", "20",
		"--warmup", "0s", "--duration", "3s", "--concurrency", "16", "--keep", "-o", "json")
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	if r.Errors != 0 || r.Answered == 0 {
		t.Fatalf("%d answers, %d errors (first: %s): %v", r.Answered, r.Errors, r.FirstError, r.Answers)
	}
	if drawn, redeemed := r.Answers["granted"], r.Answers["redeemed"]; drawn > users*draws || redeemed > pool || drawn == 0 {
		t.Errorf("answers %v: want some draws, at most %d, and at most %d rewards", r.Answers, users*draws, pool)
	}
	for reason := range r.Answers {
		switch reason {
		case "granted", "redeemed", "no_draws_left", "no_full_set", "pool_empty":
		default:
			t.Errorf("answer %q in a cards run", reason)
		}
	}
}

// buildBinaries builds flashd and flashctl into a temporary directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for _, cmd := range []string{"flashd", "flashctl"} {
		build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", filepath.Join(bin, cmd), "github.com/flashd/flashd/cmd/"+cmd)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
	}
	return bin
}

// runFlashctlBench runs the flashctl binary in bin with args (which must include
// --keep and -o json), checks that it left no process running on its
// directory, and returns its report.
func runFlashctlBench(t *testing.T, bin string, args ...string) *bench.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "flashctl"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // the bench, and so its children, die with the test
	if err := cmd.Run(); err != nil {
		t.Fatalf("flashctl %v: %v\n%s", args, err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout.String())
	}
	kept := keptDir(t, rep.Notes)
	if pids := processesUsing(kept); len(pids) > 0 {
		t.Errorf("processes still running on %s: %v", kept, pids)
	}
	return &rep
}

// keptDir returns the directory the bench kept (--keep) and removes it
// at the end of the test.
func keptDir(t *testing.T, notes []string) string {
	t.Helper()
	for _, n := range notes {
		if rest, ok := strings.CutPrefix(n, "kept "); ok {
			dir, _, _ := strings.Cut(rest, ":")
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	t.Fatalf("no kept directory in the notes %v", notes)
	return ""
}

// processesUsing returns the PIDs whose command line mentions dir.
func processesUsing(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(dir)) {
			out = append(out, e.Name())
		}
	}
	return out
}
