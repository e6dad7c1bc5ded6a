// Package demo is `flashd demo`: a whole flashd system on one machine (three
// store nodes in three regions and front doors, as supervised child
// processes on loopback), a flash sale, and a simulated crowd driven
// through the client library, shown live, optionally with the store leader
// killed mid-sale, and checked at the end against what the store holds.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/cmd/internal/localcluster"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Config is what `flashd demo` was asked to do.
type Config struct {
	Binary       string        // the flashd binary the children run
	Users        int           // simulated users
	Stock        int           // units on sale, over all items
	Items        int           // items on sale
	PerUserLimit int           // units per user and item
	Duration     time.Duration // bound on the crowd, from the sale's opening
	Waves        int           // entry waves
	WaveInterval time.Duration // between wave openings
	GlobalRate   float64       // claims per second over all front doors (0: no limit)
	PerUserRate  float64       // claims per second per user (0: no limit)
	DegradeLevel int           // 0-3
	DropFraction float64       // L2 and L3
	Concurrency  int           // presses in flight at once
	FrontDoors   int
	Chaos        bool // kill the store leader mid-sale, restart it later
	Keep         bool // keep the data directories and logs
	Live         bool // redraw a live display (a terminal); else plain lines
	Out          io.Writer
}

// Limits of Config.
const (
	usersMax      = 10_000_000
	stockMax      = 10_000_000
	wavesMax      = 64
	concurrentMax = 4096
	frontDoorsMax = 8
	durationMax   = 10 * time.Minute
)

// itemNames are the goods on sale, in order of popularity.
var itemNames = []string{"lantern", "kite", "teapot", "mooncake", "fan", "drum", "umbrella", "scroll"}

const (
	campaignID     = "spring"
	campaignName   = "Spring Festival flash sale"
	openLead       = time.Second // from the front doors' readiness to the sale's opening
	reservationTTL = time.Hour   // no reservation expires during the demo
	pollInterval   = 500 * time.Millisecond
	leaderInterval = time.Second
	raftTimer      = "500ms" // heartbeat and election timeouts: a quick failover to watch
)

func (c *Config) validate() error {
	switch {
	case c.Users < 1 || c.Users > usersMax:
		return fmt.Errorf("--users %d: must be in [1, %d]", c.Users, usersMax)
	case c.Items < 1 || c.Items > len(itemNames):
		return fmt.Errorf("--items %d: must be in [1, %d]", c.Items, len(itemNames))
	case c.Stock < c.Items || c.Stock > stockMax:
		return fmt.Errorf("--stock %d: must be in [items %d, %d]", c.Stock, c.Items, stockMax)
	case c.PerUserLimit < 1:
		return fmt.Errorf("--per-user-limit %d: must be at least 1", c.PerUserLimit)
	case c.Duration < time.Second || c.Duration > durationMax:
		return fmt.Errorf("--duration %v: must be in [1s, %v]", c.Duration, durationMax)
	case c.Waves < 1 || c.Waves > wavesMax:
		return fmt.Errorf("--waves %d: must be in [1, %d]", c.Waves, wavesMax)
	case c.WaveInterval < 0 || time.Duration(c.Waves-1)*c.WaveInterval >= c.Duration:
		return fmt.Errorf("--wave-interval %v: the last of %d waves must open within --duration %v", c.WaveInterval, c.Waves, c.Duration)
	case c.GlobalRate < 0 || c.PerUserRate < 0:
		return errors.New("--global-rate and --per-user-rate must not be negative")
	case c.DegradeLevel < 0 || c.DegradeLevel > 3:
		return fmt.Errorf("--degrade-level %d: must be 0, 1, 2 or 3", c.DegradeLevel)
	case !(c.DropFraction >= 0 && c.DropFraction < 1):
		return fmt.Errorf("--drop-fraction %v: must be in [0, 1)", c.DropFraction)
	case c.Concurrency < 1 || c.Concurrency > concurrentMax:
		return fmt.Errorf("--concurrency %d: must be in [1, %d]", c.Concurrency, concurrentMax)
	case c.FrontDoors < 1 || c.FrontDoors > frontDoorsMax:
		return fmt.Errorf("--front-doors %d: must be in [1, %d]", c.FrontDoors, frontDoorsMax)
	case c.Binary == "":
		return errors.New("no flashd binary to run")
	}
	return nil
}

// Errors of Run.
var (
	// ErrCheckFailed: the store's state breaks an invariant.
	ErrCheckFailed = errors.New("invariant check failed")
	// errInterrupted: the demo was stopped (Ctrl-C) before the check.
	errInterrupted = errors.New("interrupted")
)

// startStores validates cfg, makes the temporary folder and starts the
// store nodes. stop stops every process started on the cluster and removes
// the folder unless --keep.
func startStores(ctx context.Context, cfg Config) (cl *localcluster.Cluster, stop func(), err error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "flashd-demo-")
	if err != nil {
		return nil, nil, err
	}
	cl = &localcluster.Cluster{Binary: cfg.Binary, Dir: dir, StoreArgs: []string{"--heartbeat-timeout", raftTimer, "--election-timeout", raftTimer}}
	stop = func() {
		cl.Stop()
		if cfg.Keep {
			fmt.Fprintf(cfg.Out, "kept %s: data directories and logs of every process\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}
	fmt.Fprintf(cfg.Out, "starting 3 store nodes (regions east, west, north) and %d front doors on loopback; data and logs in %s\n", cfg.FrontDoors, dir)
	if err := cl.StartStores(ctx); err != nil {
		stop()
		return nil, nil, err
	}
	return cl, stop, nil
}

// Run runs the demo: it starts the processes, runs the sale, checks the
// store, prints a summary and stops everything it started.
func Run(ctx context.Context, cfg Config) error {
	cl, stop, err := startStores(ctx, cfg)
	if err != nil {
		return err
	}
	defer stop()
	out := cfg.Out
	items, stock, err := setupSale(ctx, cl.Store, cfg)
	if err != nil {
		return err
	}
	if err := cl.StartDoors(ctx, cfg.FrontDoors, "fd"); err != nil {
		return err
	}
	c, err := client.New(ctx, cl.DoorAddrs())
	if err != nil {
		return err
	}
	defer c.Close()

	open := time.Now().Add(openLead)
	state := pb.CampaignState_CAMPAIGN_STATE_OPEN
	if _, err := cl.Store.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: campaignID, State: &state, Start: timestamppb.New(open)}); err != nil {
		return fmt.Errorf("open the sale: %w", err)
	}
	waves := "no entry waves"
	if cfg.Waves > 1 {
		waves = fmt.Sprintf("%d entry waves %v apart", cfg.Waves, cfg.WaveInterval)
	}
	fmt.Fprintf(out, "sale %q: %s units of %s, %d per user, %s; %s users over %v, %d at a time\n",
		campaignID, count(int64(cfg.Stock)), strings.Join(items, ", "), cfg.PerUserLimit, waves,
		count(int64(cfg.Users)), cfg.Duration, cfg.Concurrency)

	sale := &flashSale{st: cl.Store, items: items, stock: stock, duration: cfg.Duration, crowd: newCrowd(c, campaignID, items, open)}
	sale.users = sale.crowd.users(cfg.Users, cfg.Duration/2, rand.New(rand.NewPCG(1, 2)))
	s := &liveRun{cfg: cfg, cl: cl, client: c, work: sale, kind: "sale", campaign: campaignID,
		callName: "presses", callOne: "press", latency: "claim", open: open}
	for w := 1; w < cfg.Waves; w++ {
		at := open.Add(time.Duration(w) * cfg.WaveInterval)
		t := time.AfterFunc(time.Until(at), func() { s.event(fmt.Sprintf("entry wave %d of %d opens", w+1, cfg.Waves)) })
		defer t.Stop()
	}
	s.run(ctx, func(ctx context.Context) {
		s.event(fmt.Sprintf("sale opens: entry wave 1 of %d may claim", cfg.Waves))
		sale.crowd.run(ctx, sale.users, cfg.Concurrency)
	})
	if ctx.Err() != nil {
		return errInterrupted
	}

	acks := sale.crowd.acknowledged()
	acked := map[string]bool{}
	for _, a := range acks {
		acked[a.user] = true
	}
	fmt.Fprintln(out, "checking the store: replicas, counters, and every acknowledged claim read back ...")
	results, sv := checkInvariants(ctx, cl.Store, campaignID, items, stock, uint32(cfg.PerUserLimit), acks, sampleOthers(sale.users, acked, sampleUsers))
	sale.sv = sv
	var notes []string
	if sv.lostAnswers > 0 {
		notes = append(notes, fmt.Sprintf("(%d sampled users without an answer hold a claim: their press timed out after the store granted it)", sv.lostAnswers))
	}
	s.summary(out, results, notes...)
	return failed(results)
}

// failed is ErrCheckFailed if a check failed.
func failed(results []checkResult) error {
	for _, r := range results {
		if !r.ok {
			return ErrCheckFailed
		}
	}
	return nil
}

// setupSale creates the campaign (in draft, opened later), its items, and
// the funnel configuration.
func setupSale(ctx context.Context, st *client.Store, cfg Config) ([]string, []uint64, error) {
	_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: campaignID, Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: campaignName,
		Start: timestamppb.Now(), PerUserLimit: uint32(cfg.PerUserLimit),
		WaveCount: uint32(cfg.Waves), WaveInterval: durationpb.New(cfg.WaveInterval),
		ReservationTtl: durationpb.New(reservationTTL),
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("create campaign: %w", err)
	}
	items := itemNames[:cfg.Items]
	stock := splitStock(cfg.Stock, cfg.Items)
	for i, name := range items {
		if _, err := st.AddItem(ctx, &pb.AddItemRequest{CampaignId: campaignID, ItemId: name, Stock: stock[i]}); err != nil {
			return nil, nil, fmt.Errorf("add item %s: %w", name, err)
		}
	}
	_, err = st.SetFrontDoorConfig(ctx, &pb.SetFrontDoorConfigRequest{Config: &pb.FrontDoorConfig{
		GlobalRate: cfg.GlobalRate, PerUserRate: cfg.PerUserRate,
		DegradeLevel: uint32(cfg.DegradeLevel), DropFraction: cfg.DropFraction,
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("set the front doors' configuration: %w", err)
	}
	return items, stock, nil
}

// splitStock shares total evenly over n items, the remainder to the
// first. Demand is not even (the first item is the most wanted), so the
// items sell out one after another.
func splitStock(total, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(total / n)
	}
	out[0] += uint64(total % n)
	return out
}
