package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/deploy/chaos/remote"
	"github.com/flashd/flashd/deploy/chaos/runner"
)

const (
	frontDoorsEnv = "FLASHCTL_FRONTDOORS"
	chaosOutDir   = "tmp/chaos-runs"
)

func newChaosCmd(g *globals, getenv func(string) string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Jepsen-style tests of a running cluster: a claim workload, faults on a seeded schedule, checks",
	}
	cmd.AddCommand(newChaosRunCmd(g, getenv), newChaosWaitCmd(g, getenv))
	return cmd
}

type chaosRunFlags struct {
	frontDoors []string
	duration   time.Duration
	seed       uint64
	faults     string
	scripts    string
	out        string
	keep       bool
	workers    int
	users      int
	quantity   uint32
	checkTime  time.Duration
}

func newChaosRunCmd(g *globals, getenv func(string) string) *cobra.Command {
	var f chaosRunFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a claim workload through the front doors while injecting faults, then check every promise",
		Long: `Run a claim workload (several items with limited stock, many users, claims
whose outcome was not learnt resumed with the same request ID) through the
front doors, inject faults on a schedule drawn from --seed with the chaos
scripts (deploy/chaos/partition and deploy/chaos/node, which act on the
docker-compose cluster), heal, wait for recovery, and check: no oversell, no
lost acknowledgement, no user over their limit, unique claim IDs, identical
replicas, and each item's history linearizable (porcupine). Prints each
fault's availability and recovery time. On a failure it writes the history,
the final state and porcupine's visualisation to a folder it names, and
exits 1. The same seed draws the same schedule.`,
		Example: `  deploy/chaos/run --duration 3m --seed 7        # the compose cluster's endpoints filled in
  flashctl --endpoints 10.213.1.11:7000,10.213.2.11:7000 chaos run --frontdoors 10.213.1.21:8000 \
    --duration 2m --seed 7 --faults partition,kill,pause,restart,leader-transfer`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runChaos(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.frontDoors, "frontdoors", splitList(getenv(frontDoorsEnv)), "front-door gRPC addresses, comma-separated (env "+frontDoorsEnv+"; they must run --auth insecure-header)")
	fl.DurationVar(&f.duration, "duration", 2*time.Minute, "how long the workload runs, faults included")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the fault schedule and workload (0: from the clock; printed)")
	fl.StringVar(&f.faults, "faults", "partition,kill,pause,restart,leader-transfer", "fault kinds to draw from (empty: none)")
	fl.StringVar(&f.scripts, "scripts", "deploy/chaos", "folder of the partition and node scripts")
	fl.StringVar(&f.out, "out", "", "folder for the run's files (default: "+chaosOutDir+"/seed-SEED, written on failure or with --keep)")
	fl.BoolVar(&f.keep, "keep", false, "write the run's files even when it passes")
	fl.IntVar(&f.workers, "workers", 0, "concurrent claimers (0: default)")
	fl.IntVar(&f.users, "users", 0, "size of the user pool (0: default)")
	fl.Uint32Var(&f.quantity, "quantity-max", 1, "claims ask for 1 unit, and one in six for 2..this (never above the item's limit)")
	fl.DurationVar(&f.checkTime, "check-timeout", 0, "linearizability check time per item before it is reported unknown (0: default)")
	return cmd
}

func runChaos(cmd *cobra.Command, g *globals, f chaosRunFlags) error {
	kinds, err := runner.ParseFaults(f.faults)
	if err != nil {
		return fmt.Errorf("--faults: %w", err)
	}
	switch {
	case len(splitList(strings.Join(f.frontDoors, ","))) == 0:
		return errors.New("--frontdoors: no front-door address given")
	case f.duration <= 0:
		return fmt.Errorf("--duration %v: must be positive", f.duration)
	case f.workers < 0 || f.users < 0 || f.checkTime < 0:
		return errors.New("--workers, --users and --check-timeout must not be negative")
	case f.quantity < 1:
		return fmt.Errorf("--quantity-max %d: must be at least 1", f.quantity)
	}
	if len(kinds) > 0 {
		for _, s := range []string{"partition", "node"} {
			if _, err := os.Stat(filepath.Join(f.scripts, s)); err != nil {
				return fmt.Errorf("--scripts: %w (run from the repository root, or point --scripts at deploy/chaos)", err)
			}
		}
	}
	cfg := runner.DefaultConfig()
	cfg.Duration, cfg.Faults, cfg.Seed = f.duration, kinds, f.seed
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano()%1_000_000) + 1
	}
	if f.workers > 0 {
		cfg.Workers = f.workers
	}
	if f.users > 0 {
		cfg.Users = f.users
	}
	cfg.QuantityMax = f.quantity
	if f.checkTime > 0 {
		cfg.CheckOptions.LinearizabilityTimeout = f.checkTime
	}
	cfg.Log = cmd.OutOrStdout()
	g.calledCluster = true

	ctx := cmd.Context()
	c, err := remote.Dial(ctx, g.endpoints, splitList(strings.Join(f.frontDoors, ",")), f.scripts)
	if err != nil {
		return err
	}
	defer c.Close()
	readyCtx, cancel := context.WithTimeout(ctx, g.timeout)
	cfg.Topology, err = c.Topology(readyCtx)
	cancel()
	if err != nil {
		return err
	}
	res, err := runner.Run(ctx, cfg, c, c)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprint(out, res.Summary())
	dir := f.out
	if dir == "" {
		dir = filepath.Join(chaosOutDir, fmt.Sprintf("seed-%d", cfg.Seed))
	}
	if f.keep || !res.OK() {
		files, err := res.WriteArtifacts(dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "files: %s (%d: history.json, final.json, report.json, faults.json, summaries", dir, len(files))
		if n := len(files) - 6; n > 0 {
			fmt.Fprintf(out, ", %d linearizability-*.html", n)
		}
		fmt.Fprintln(out, ")")
	}
	if !res.OK() {
		return fmt.Errorf("seed %d failed: %d violations, %d fault errors; replay the schedule with --seed %d",
			cfg.Seed, len(res.Report.Violations), faultErrors(res), cfg.Seed)
	}
	return nil
}

func faultErrors(r *runner.Result) int {
	n := 0
	for _, f := range r.Faults {
		if f.Err != "" {
			n++
		}
	}
	return n
}

func newChaosWaitCmd(g *globals, getenv func(string) string) *cobra.Command {
	var (
		frontDoors []string
		members    int
	)
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until the store nodes answer with a leader and every front door serves (within --timeout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if members < 1 {
				return fmt.Errorf("--members %d: must be at least 1", members)
			}
			g.calledCluster = true
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			c, err := remote.Dial(ctx, g.endpoints, splitList(strings.Join(frontDoors, ",")), "")
			if err != nil {
				return err
			}
			defer c.Close()
			return c.WaitReady(ctx, members)
		},
	}
	cmd.Flags().StringSliceVar(&frontDoors, "frontdoors", splitList(getenv(frontDoorsEnv)), "front-door gRPC addresses, comma-separated (env "+frontDoorsEnv+")")
	cmd.Flags().IntVar(&members, "members", 3, "store nodes that must answer")
	return cmd
}
