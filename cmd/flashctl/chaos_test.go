package main

import (
	"strings"
	"testing"
)

// Bad chaos flags are usage errors, found before any cluster is called.
func TestChaosUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"chaos", "run", "--frontdoors", "127.0.0.1:1", "--faults", "kill,meteor"}, `unknown fault "meteor"`},
		{[]string{"chaos", "run"}, "--frontdoors: no front-door address given"},
		{[]string{"chaos", "run", "--frontdoors", "127.0.0.1:1", "--duration", "0s"}, "--duration 0s: must be positive"},
		{[]string{"chaos", "run", "--frontdoors", "127.0.0.1:1", "--quantity-max", "0"}, "--quantity-max 0"},
		{[]string{"chaos", "run", "--frontdoors", "127.0.0.1:1", "--scripts", t.TempDir()}, "--scripts"},
		{[]string{"chaos", "wait", "--members", "0"}, "--members 0"},
	} {
		r := flashctl(t, nil, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("flashctl %v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, exitUsage, tc.want)
		}
	}
}

// Waiting for a cluster that is not there ends with --timeout, as a failure.
func TestChaosWaitTimesOut(t *testing.T) {
	r := flashctl(t, nil, "--endpoints", "127.0.0.1:1", "--timeout", "1s", "chaos", "wait", "--frontdoors", "127.0.0.1:1")
	if r.code != exitFailure || !strings.Contains(r.stderr, "not ready") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}
