package sim

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashd/flashd/deploy/chaos/check"
	"github.com/flashd/flashd/deploy/chaos/runner"
)

var (
	flagSeeds    = flag.Int("seeds", 24, "how many seeds TestSeeds runs (make chaos-sim SEEDS=N)")
	flagFirst    = flag.Uint64("first-seed", 1, "the first seed TestSeeds runs")
	flagSeed     = flag.Uint64("seed", 0, "replay this one seed (make chaos-sim SEED=S)")
	flagParallel = flag.Int("parallel-seeds", 2, "seeds run at once")
	flagOut      = flag.String("out", "", "folder for the files of failing seeds (default: a folder under the system temp dir)")
	flagVerbose  = flag.Bool("seed-log", false, "log each seed's faults as they happen")
)

// TestSeeds runs many seeded fault schedules against the in-process
// cluster and checks every promise after each. A failing seed is printed
// with the command that replays its schedule, and its history and
// porcupine's visualisation are kept.
func TestSeeds(t *testing.T) {
	seeds := make([]uint64, 0, *flagSeeds)
	if *flagSeed != 0 {
		seeds = append(seeds, *flagSeed)
	} else {
		n := *flagSeeds
		if testing.Short() {
			n = min(n, 4)
		}
		for i := 0; i < n; i++ {
			seeds = append(seeds, *flagFirst+uint64(i))
		}
	}
	out := *flagOut
	if out == "" {
		out = filepath.Join(os.TempDir(), "flashd-chaos-sim")
	}
	var (
		mu                                    sync.Mutex
		faults, ops, unknown, linOps, seedsOK int
		failed                                []uint64
	)
	sem := make(chan struct{}, max(1, *flagParallel))
	var wg sync.WaitGroup
	for _, seed := range seeds {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := runSeed(t, seed, BreakNone)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("seed %d: %v (replay: make chaos-sim SEED=%d)", seed, err, seed)
				failed = append(failed, seed)
				return
			}
			if done := seedsOK + len(failed) + 1; done%50 == 0 {
				t.Logf("%d of %d seeds done, %d failed", done, len(seeds), len(failed))
			}
			faults += len(res.Faults)
			ops += res.Report.Operations
			unknown += res.Report.Unknown
			linOps += res.Report.LinearizableOps()
			if res.OK() {
				seedsOK++
				return
			}
			failed = append(failed, seed)
			dir := filepath.Join(out, fmt.Sprintf("seed-%d", seed))
			if _, err := res.WriteArtifacts(dir); err != nil {
				t.Errorf("seed %d: write its files: %v", seed, err)
			}
			t.Errorf("seed %d FAILED (replay: make chaos-sim SEED=%d; history and visualisation in %s):\n%s", seed, seed, dir, res.Summary())
		}()
	}
	wg.Wait()
	t.Logf("%d seeds: %d passed, failed %v; %d faults injected, %d claims (%d with an outcome never learnt), %d operations checked for linearizability",
		len(seeds), seedsOK, failed, faults, ops, unknown, linOps)
	if faults == 0 || ops == 0 {
		t.Fatal("no fault injected or no claim made: the seeds tested nothing")
	}
}

func runSeed(t *testing.T, seed uint64, brk Break) (*runner.Result, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "flashd-sim-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	cfg := Config(seed)
	res, err := RunSeed(ctx, dir, cfg, brk, &syncWriter{w: &log})
	if *flagVerbose || (res != nil && !res.OK()) {
		t.Logf("seed %d:\n%s", seed, log.String())
	}
	return res, err
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// The same seed draws the same schedule, so a failing seed replays.
func TestScheduleReplays(t *testing.T) {
	cfg := Config(42)
	a := runner.Schedule(42, cfg.Duration, cfg.Faults, cfg.Topology, cfg.Timing)
	b := runner.Schedule(42, cfg.Duration, cfg.Faults, cfg.Topology, cfg.Timing)
	if len(a) == 0 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("schedules differ or are empty:\n%v\n%v", a, b)
	}
	if c := runner.Schedule(43, cfg.Duration, cfg.Faults, cfg.Topology, cfg.Timing); fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatalf("seeds 42 and 43 drew the same schedule %v", a)
	}
}

// brokenRun runs seeds 1 to 6 with the given faults on a broken store
// until the check named want reports it (a broken store acknowledging
// before commit is only seen when a fault hits the leader with claims in
// flight, which the first seeds do).
func brokenRun(t *testing.T, brk Break, want string, faults ...string) {
	if testing.Short() {
		t.Skip("multi-second cluster runs")
	}
	for seed := uint64(1); seed <= 6; seed++ {
		cfg := Config(seed)
		cfg.Faults = faults
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := RunSeed(ctx, dir, cfg, brk, nil)
		cancel()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, v := range res.Report.Violations {
			if v.Check == want {
				t.Logf("seed %d: broken store caught: %s", seed, v)
				if files, err := res.WriteArtifacts(filepath.Join(dir, "out")); err != nil || len(files) == 0 {
					t.Fatalf("artifacts of a failed run: %v %v", files, err)
				}
				return
			}
		}
		t.Logf("seed %d: not caught yet:\n%s", seed, res.Summary())
	}
	t.Fatalf("the broken store (%v) was never caught by %s", brk, want)
}

func TestCatchesAckBeforeCommit(t *testing.T) {
	brokenRun(t, BreakAckBeforeCommit, check.CheckLostAck, runner.FaultKill, runner.FaultPartition)
}

func TestCatchesSkippedUserLimit(t *testing.T) {
	brokenRun(t, BreakSkipUserLimit, check.CheckUserLimit, runner.FaultLeaderTransfer)
}
