// Package runner runs a chaos experiment: a claim workload (several items
// with limited stock, many users, claims whose outcome was not learnt
// resumed with the same request ID) against a cluster, faults injected on a
// schedule drawn from a seed, a heal and a wait for recovery, then the
// checks of package check, recovery times and availability per fault.
//
// The cluster is behind two small interfaces: a Target the workload claims
// through and reads the final state from, and an Injector that makes and
// heals faults. `flashctl chaos run` implements them for a docker-compose
// cluster; deploy/chaos/sim for store nodes in one process.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/flashd/flashd/deploy/chaos/check"
)

// ClaimRequest is one claim call.
type ClaimRequest struct {
	Campaign, Item, User, RequestID string
	Quantity                        uint32
}

// ClaimResult is what the call learnt. Outcome is check.Unknown when the
// call ended without a definite answer.
type ClaimResult struct {
	Outcome check.Outcome
	ClaimID uint64
	Reason  string
}

// Target is the cluster as the workload sees it.
type Target interface {
	// Setup creates the items (and their campaigns, open for claims).
	Setup(ctx context.Context, items []check.ItemSpec) error
	// Claim makes one claim call, bounded by ctx.
	Claim(ctx context.Context, req ClaimRequest) ClaimResult
	// Final waits until the replicas agree (within ctx) and reads the
	// items, the claims of these users, and every replica's digest. It
	// leaves ReadStart and ReadEnd to the runner.
	Final(ctx context.Context, items []check.ItemSpec, users []string) check.Final
}

// Injector makes and heals faults.
type Injector interface {
	// Inject starts a fault and says what it hit (the node or region
	// "leader" resolved to).
	Inject(ctx context.Context, f Fault) (string, error)
	// Heal ends a fault with a duration; target is what Inject returned.
	Heal(ctx context.Context, f Fault, target string) error
	// HealAll ends every fault; it is safe to call at any time.
	HealAll(ctx context.Context) error
}

// Config is one run.
type Config struct {
	Seed     uint64
	Duration time.Duration // of the workload, faults included
	Faults   []string      // kinds to draw from; none: a run without faults
	Topology Topology
	Timing   Timing

	Workers          int           // concurrent claimers
	Think            time.Duration // mean pause between a worker's calls
	Users            int           // size of the user pool
	Items            int           // items per campaign
	CampaignEvery    time.Duration // a new campaign becomes the hot one this often
	StockMin         uint64
	StockMax         uint64
	PerUserLimitMax  uint32        // limits are drawn from 1..this
	QuantityMax      uint32        // claims are of 1..this units (never above the item's limit)
	CallTimeout      time.Duration // one claim call, client retries included
	MaxResends       int           // times a claim with an unlearnt outcome is sent again
	MaxCallsPerItem  int           // bound on each item's history
	MaxCalls         int           // bound on the whole history
	ProbeInterval    time.Duration // recovery probe: one claim this often
	RecoveryTimeout  time.Duration // wait for a granted claim after the last heal
	Quiet            time.Duration // after the workload stops, before the final read
	FinalTimeout     time.Duration // for the replicas to agree and the final read
	RunID            string        // prefix of campaign, user and request IDs; default from the seed and time
	CheckOptions     check.Options
	Log              io.Writer // progress lines; nil: none
	injectTimeoutMax time.Duration
}

// DefaultConfig is a run against a real cluster: faults of seconds.
func DefaultConfig() Config {
	return Config{
		Duration: 2 * time.Minute,
		Faults:   AllFaults,
		Timing: Timing{Warmup: 5 * time.Second, Cooldown: 5 * time.Second,
			FaultMin: 4 * time.Second, FaultMax: 12 * time.Second, GapMin: 3 * time.Second, GapMax: 8 * time.Second},
		Workers: 16, Think: 40 * time.Millisecond, Users: 300, Items: 3,
		CampaignEvery: 20 * time.Second, StockMin: 50, StockMax: 600, PerUserLimitMax: 2, QuantityMax: 1,
		CallTimeout: 8 * time.Second, MaxResends: 3, MaxCallsPerItem: 4000, MaxCalls: 200_000,
		ProbeInterval: 100 * time.Millisecond, RecoveryTimeout: 60 * time.Second,
		Quiet: 7 * time.Second, FinalTimeout: 90 * time.Second,
		CheckOptions: check.Options{LinearizabilityTimeout: 60 * time.Second},
	}
}

func (c *Config) validate() error {
	switch {
	case c.Duration <= 0:
		return errors.New("duration must be positive")
	case c.Workers < 1 || c.Users < 1 || c.Items < 1:
		return errors.New("workers, users and items must be at least 1")
	case c.StockMin < 1 || c.StockMax < c.StockMin:
		return errors.New("stock range must be 1 <= min <= max")
	case c.PerUserLimitMax < 1 || c.QuantityMax < 1:
		return errors.New("per-user limit and quantity must be at least 1")
	case c.CampaignEvery <= 0 || c.CallTimeout <= 0 || c.ProbeInterval <= 0:
		return errors.New("campaign interval, call timeout and probe interval must be positive")
	case c.MaxCalls < 1 || c.MaxCallsPerItem < 1:
		return errors.New("history bounds must be at least 1")
	case len(c.Faults) > 0 && len(c.Topology.nodes()) == 0:
		return errors.New("faults need a topology")
	}
	if c.RunID == "" {
		c.RunID = fmt.Sprintf("chaos-%d-%d", c.Seed, time.Now().Unix()%100000)
	}
	if c.injectTimeoutMax == 0 {
		c.injectTimeoutMax = time.Minute
	}
	return nil
}

// FaultResult is one injected fault and what the workload saw during it.
type FaultResult struct {
	Fault    Fault  `json:"fault"`
	Target   string `json:"target,omitempty"`   // what "leader" resolved to
	Injected int64  `json:"injected"`           // ns since start
	Healed   int64  `json:"healed"`             // ns since start; = Injected for instant faults
	Err      string `json:"error,omitempty"`    // injection or heal failed
	Calls    int    `json:"calls"`              // claim calls started while it lasted
	Definite int    `json:"definite"`           // of those, answered (granted or refused)
	Granted  int    `json:"granted"`            // of those, granted
	Recovery int64  `json:"recovery_ns"`        // heal to the end of the first granted claim after it; -1: none
	Outage   int64  `json:"longest_outage_ns"`  // longest time without a granted claim in [inject, heal+recovery]
	Note     string `json:"note,omitempty"`     // e.g. "nothing left to grant"
	Resolved string `json:"resolved,omitempty"` // the fault as injected, "leader" resolved
}

// Availability is the share of calls started during the fault that got a
// definite answer.
func (f FaultResult) Availability() float64 {
	if f.Calls == 0 {
		return 1
	}
	return float64(f.Definite) / float64(f.Calls)
}

// Result is a whole run.
type Result struct {
	Config   Config        `json:"-"`
	Schedule []Fault       `json:"schedule"`
	Faults   []FaultResult `json:"faults"`
	History  check.History `json:"-"`
	Final    check.Final   `json:"-"`
	Report   *check.Report `json:"report"`
	Elapsed  time.Duration `json:"elapsed"`
	// Recovered: a claim was granted within RecoveryTimeout of the last heal.
	Recovered bool `json:"recovered"`
}

// OK reports whether the run found no violation, every fault was injected
// and healed, and the cluster took writes again after the last heal.
func (r *Result) OK() bool {
	if !r.Report.OK() || !r.Recovered {
		return false
	}
	for _, f := range r.Faults {
		if f.Err != "" {
			return false
		}
	}
	return true
}

// Run runs one experiment. It returns an error only when the run could
// not be made (bad config, setup failed); broken promises are in the
// result.
func Run(ctx context.Context, cfg Config, target Target, injector Injector) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("chaos config: %w", err)
	}
	started := time.Now()
	kinds := cfg.Faults
	if len(cfg.Topology.Regions) < 2 {
		kinds = slices.DeleteFunc(slices.Clone(kinds), func(k string) bool { return k == FaultPartition })
	}
	res := &Result{Config: cfg, Schedule: Schedule(cfg.Seed, cfg.Duration, kinds, cfg.Topology, cfg.Timing)}
	w := newWorkload(cfg)
	res.History.Seed, res.History.Items = cfg.Seed, w.items
	cfg.logf("run %s: seed %d, %s, %d items, %d users, %d workers, %d faults scheduled",
		cfg.RunID, cfg.Seed, cfg.Duration, len(w.items), len(w.users), cfg.Workers, len(res.Schedule))
	setupCtx, cancel := context.WithTimeout(ctx, cfg.injectTimeoutMax)
	err := target.Setup(setupCtx, w.items)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("set up items: %w", err)
	}

	w.start(ctx, target)
	res.Faults = runSchedule(ctx, cfg, res.Schedule, injector, w)
	healCtx, cancel := context.WithTimeout(context.Background(), cfg.injectTimeoutMax)
	if err := injector.HealAll(healCtx); err != nil {
		cfg.logf("heal all: %v", err)
	}
	cancel()
	lastHeal := w.now()
	if res.Recovered = w.waitGranted(ctx, lastHeal, cfg.RecoveryTimeout); !res.Recovered {
		cfg.logf("no claim granted within %s of the last heal", cfg.RecoveryTimeout)
	}
	w.stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("run interrupted, every fault healed: %w", err)
	}
	res.History.Calls = w.calls()
	cfg.logf("workload stopped: %d calls; waiting %s for in-flight work, then reading the final state", len(res.History.Calls), cfg.Quiet)
	sleep(ctx, cfg.Quiet)

	finalCtx, cancel := context.WithTimeout(ctx, cfg.FinalTimeout)
	readStart := w.now()
	res.Final = target.Final(finalCtx, w.items, w.allUsers())
	res.Final.ReadStart, res.Final.ReadEnd = readStart, w.now()
	cancel()
	for i := range res.Faults {
		measureFault(&res.Faults[i], res.History.Calls)
	}
	res.Report = check.Check(res.History, res.Final, cfg.CheckOptions)
	res.Elapsed = time.Since(started)
	return res, nil
}

// runSchedule injects and heals each fault at its time.
func runSchedule(ctx context.Context, cfg Config, schedule []Fault, inj Injector, w *workload) []FaultResult {
	var out []FaultResult
	for _, f := range schedule {
		if !sleepUntil(ctx, w.start0.Add(f.At)) {
			break
		}
		fr := FaultResult{Fault: f, Injected: w.now()}
		injCtx, cancel := context.WithTimeout(ctx, cfg.injectTimeoutMax)
		target, err := inj.Inject(injCtx, f)
		cancel()
		fr.Target = target
		fr.Resolved = resolved(f, target)
		if err != nil {
			fr.Err = "inject: " + err.Error()
			cfg.logf("%6.1fs  %s: %v", seconds(fr.Injected), f, err)
		} else {
			cfg.logf("%6.1fs  %s", seconds(fr.Injected), fr.Resolved)
		}
		if f.Duration > 0 {
			sleepUntil(ctx, w.start0.Add(f.At+f.Duration))
			healCtx, cancel := context.WithTimeout(context.Background(), cfg.injectTimeoutMax)
			if err := inj.Heal(healCtx, f, target); err != nil && fr.Err == "" {
				fr.Err = "heal: " + err.Error()
			}
			cancel()
			fr.Healed = w.now()
			cfg.logf("%6.1fs  healed %s", seconds(fr.Healed), fr.Resolved)
		} else {
			fr.Healed = w.now()
		}
		out = append(out, fr)
	}
	sleepUntil(ctx, w.start0.Add(cfg.Duration))
	return out
}

func resolved(f Fault, target string) string {
	if target == "" {
		return f.String()
	}
	switch {
	case f.Kind == FaultPartition && f.Partition == PartitionIsolate:
		return "partition isolate " + target + " (the leader's)"
	case f.Node == Leader:
		return f.Kind + " " + target + " (leader)"
	case f.Kind == FaultLeaderTransfer:
		return "leader-transfer to " + target
	}
	return f.String()
}

// measureFault computes availability, recovery and the longest outage of
// one fault from the calls.
func measureFault(fr *FaultResult, calls []check.Call) {
	fr.Recovery = -1
	var grants []int64
	for _, c := range calls {
		if c.Start >= fr.Injected && c.Start <= fr.Healed {
			fr.Calls++
			if c.Outcome != check.Unknown {
				fr.Definite++
			}
			if c.Outcome == check.Granted {
				fr.Granted++
			}
		}
		if c.Outcome == check.Granted {
			grants = append(grants, c.End)
		}
	}
	slices.Sort(grants)
	if i, _ := slices.BinarySearch(grants, fr.Healed); i < len(grants) {
		fr.Recovery = grants[i] - fr.Healed
	}
	end := fr.Healed
	if fr.Recovery >= 0 {
		end += fr.Recovery
	}
	last := fr.Injected
	for _, g := range grants {
		if g < fr.Injected {
			continue
		}
		if g > end {
			break
		}
		fr.Outage = max(fr.Outage, g-last)
		last = g
	}
	fr.Outage = max(fr.Outage, end-last)
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

func seconds(ns int64) float64 { return float64(ns) / 1e9 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	return sleep(ctx, time.Until(at))
}

// rngFor derives an independent stream from the run's seed.
func rngFor(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream*0x9e3779b97f4a7c15+1))
}
