package main

import (
	"regexp"
	"strings"
	"testing"
)

// cardChecks are the card-collect event's invariant checks.
var cardChecks = []string{"rare-card caps", "reward pool", "draws within grants", "every acknowledged draw issued", "pot split", "replicas agree"}

// TestDemoCardCollect runs `flashd demo --event card-collect --chaos` with
// a small crowd: the store leader is killed with SIGKILL mid-event and
// restarted, and every check of the summary (caps, the reward pool, every
// user's draws within their grant, every acknowledged draw issued, the pot
// split, identical replicas) must pass. The output has the flash sale's
// shape: periodic lines with the leader and the rates, the funnel by
// stage, latency percentiles.
func TestDemoCardCollect(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo: 3 store processes, 2 front doors and a crowd")
	}
	bin := buildBinaries(t)
	out := runDemo(t, bin, "--event", "card-collect", "--users", "600", "--duration", "15s", "--chaos", "--concurrency", "32", "--plain")
	assertDemoPassed(t, out, cardChecks...)
	for _, want := range []string{
		"chaos: kill -9 store leader", "restarted", "caught up", "rewards pool empty", "xi (cap) cap reached",
		"store (Raft)", "card call latency (one draw or redemption",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^ +\d+\.\ds leader=n\d sent/s=\d+ draws=\d+ draws/s=\d+ redeemed=\d+`).MatchString(out) {
		t.Errorf("no periodic line with the leader and the rates:\n%s", out)
	}
	if !regexp.MustCompile(`rewards +\d+ of \d+ given \(empty after`).MatchString(out) {
		t.Errorf("the reward pool did not run out:\n%s", out)
	}
}
