package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runDemo runs the real `flashd demo` with small numbers and returns its
// output; it fails the test if the demo fails.
func runDemo(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "flashd"), append([]string{"demo"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The demo dies with the test, and its children with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if err != nil {
		t.Fatalf("flashd demo %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

// saleChecks are the flash sale's invariant checks.
var saleChecks = []string{"replicas agree", "no oversell", "every acknowledged claim present", "no user over the per-user limit"}

// assertDemoPassed checks that each of checks passed in the summary and
// none failed, and that the demo stopped its processes and removed its
// files.
func assertDemoPassed(t *testing.T, out string, checks ...string) {
	t.Helper()
	for _, check := range checks {
		if !strings.Contains(out, "PASS  "+check+":") {
			t.Errorf("check %q did not pass:\n%s", check, out)
		}
	}
	if !strings.Contains(out, "result: PASS") || strings.Contains(out, "FAIL") {
		t.Errorf("the demo did not pass:\n%s", out)
	}
	m := regexp.MustCompile(`data and logs in (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output does not name the data folder:\n%s", out)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("data folder %s still there (err %v)", m[1], err)
	}
	if pids := processesMentioning(m[1]); len(pids) > 0 {
		t.Errorf("processes still running on %s: %v", m[1], pids)
	}
}

// processesMentioning returns the PIDs whose command line contains s.
func processesMentioning(s string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, filepath.Base(filepath.Dir(f)))
		}
	}
	return pids
}

// TestDemo runs the real `flashd demo` as CI does, with small crowds; the
// invariant check read back from the store must pass every time.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo: 3 store processes, 2 front doors and a crowd")
	}
	bin := buildBinaries(t)
	t.Run("SellsOutThroughAFailover", func(t *testing.T) { testDemoFailover(t, bin) })
	t.Run("ClientsDropAtLevel3", func(t *testing.T) { testDemoLevel3(t, bin) })
}

// testDemoFailover: with --chaos the store leader is killed with SIGKILL
// mid-sale and restarted; the sale still sells out, exactly.
func testDemoFailover(t *testing.T, bin string) {
	out := runDemo(t, bin, "--users", "4000", "--stock", "300", "--duration", "8s", "--waves", "2",
		"--wave-interval", "2s", "--chaos", "--concurrency", "32", "--plain")
	assertDemoPassed(t, out, saleChecks...)
	for _, want := range []string{"chaos: kill -9 store leader", "restarted", "300 units held", "(time to sell out)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// testDemoLevel3: at degradation level 3 the front doors tell the client
// library to drop a share of claims, which it does without sending them,
// and the front doors do not drop those clients' claims a second time.
func testDemoLevel3(t *testing.T, bin string) {
	out := runDemo(t, bin, "--users", "3000", "--stock", "200", "--duration", "6s", "--waves", "1",
		"--degrade-level", "3", "--drop-fraction", "0.5", "--concurrency", "32", "--plain")
	assertDemoPassed(t, out, saleChecks...)
	m := regexp.MustCompile(`([\d,]+) calls dropped locally \(L3\)`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Errorf("the client dropped nothing at level 3:\n%s", out)
	}
	if regexp.MustCompile(`degradation drop \(L2\)\s+[\d,]+\s+[1-9]`).MatchString(out) {
		t.Errorf("front doors dropped claims of clients that drop by themselves:\n%s", out)
	}
}
