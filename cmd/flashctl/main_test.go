package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// result is what one flashctl run printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// flashctl runs the command line with args against the fake cluster (none
// if f is nil), with an empty environment.
func flashctl(t *testing.T, f *fakeCluster, args ...string) result {
	t.Helper()
	if f != nil {
		args = append([]string{"--endpoints", f.addr, "--timeout", "5s"}, args...)
	}
	return flashctlEnv(t, map[string]string{}, args...)
}

// flashctlEnv runs the command line with args and the environment env.
func flashctlEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr, func(k string) string { return env[k] })
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok fails the test unless the run succeeded quietly on stderr.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	return r
}
