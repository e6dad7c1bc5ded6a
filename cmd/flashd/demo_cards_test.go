package main

import (
	"strings"
	"testing"
)

// TestDemoCardCollect runs `flashd demo --event card-collect` with a small
// crowd: every check of its summary (caps, the reward pool, every
// acknowledged draw issued, the pot split, identical replicas) must pass.
func TestDemoCardCollect(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo: 3 store processes, 2 front doors and a crowd")
	}
	bin := buildBinaries(t)
	out := runDemo(t, bin, "--event", "card-collect", "--users", "600", "--duration", "15s", "--plain")
	for _, check := range []string{"caps", "reward pool", "draws", "pot split", "replicas"} {
		if !strings.Contains(out, "ok   "+check) {
			t.Errorf("check %q did not pass:\n%s", check, out)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("a check failed:\n%s", out)
	}
}
