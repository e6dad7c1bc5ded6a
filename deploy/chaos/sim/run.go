package sim

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/flashd/flashd/deploy/chaos/check"
	"github.com/flashd/flashd/deploy/chaos/runner"
)

// openTimeout bounds the start of a cluster and the joins.
const openTimeout = 20 * time.Second

// Config is the runner's configuration for one simulated seed: two seconds
// of workload with faults of a few hundred milliseconds, so that a seed
// takes about three seconds and sees several elections.
func Config(seed uint64) runner.Config {
	return runner.Config{
		Seed:     seed,
		Duration: 2 * time.Second,
		Faults:   runner.AllFaults,
		Topology: DefaultTopology(),
		Timing: runner.Timing{Warmup: 200 * time.Millisecond, Cooldown: 200 * time.Millisecond,
			FaultMin: 250 * time.Millisecond, FaultMax: 700 * time.Millisecond, GapMin: 100 * time.Millisecond, GapMax: 300 * time.Millisecond},
		Workers: 6, Think: 3 * time.Millisecond, Users: 30, Items: 2,
		CampaignEvery: 700 * time.Millisecond, StockMin: 10, StockMax: 80, PerUserLimitMax: 2, QuantityMax: 2,
		CallTimeout: 300 * time.Millisecond, MaxResends: 2, MaxCallsPerItem: 1500, MaxCalls: 20_000,
		ProbeInterval: 20 * time.Millisecond, RecoveryTimeout: 10 * time.Second,
		Quiet: 20 * time.Millisecond, FinalTimeout: time.Minute,
		RunID:        fmt.Sprintf("sim%d", seed),
		CheckOptions: check.Options{LinearizabilityTimeout: 20 * time.Second},
	}
}

// RunSeed runs one seed on a new cluster with its files under dir.
func RunSeed(ctx context.Context, dir string, cfg runner.Config, brk Break, log io.Writer) (*runner.Result, error) {
	openCtx, cancel := context.WithTimeout(ctx, openTimeout)
	c, err := Open(openCtx, dir, cfg.Topology, brk)
	cancel()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cfg.Log = log
	return runner.Run(ctx, cfg, c, c)
}
