package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/cmd/internal/localcluster"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Settings of the runs.
const (
	reservationTTL = time.Hour // no reservation expires during a run
	// selloutSettle is how long after the first SOLD_OUT answer the
	// after-sell-out phase starts: batches in flight at the sell-out
	// reach the store and come back first.
	selloutSettle = 500 * time.Millisecond
	setupTimeout  = 30 * time.Second
	// Names of the local front doors: coalescing on, and off.
	doorPrefix        = "fd"
	coalesceOffPrefix = "nc"
)

// coalesceOffFlags are a front door's flags with coalescing off: one claim
// per store request, with as many requests in flight as claims the default
// may hold in its batches in flight (cmd/flashd/frontdoor_bench_test.go
// does the same).
var coalesceOffFlags = []string{"--batch-max", "1", "--batch-window", "0", "--batches-in-flight", "1024", "--queue-max", "4096"}

// Names of the runs, of the process groups whose CPU they count, and of
// the items each flashd run claims.
const (
	runFlashd        = "flashd"
	runCoalesceOff   = "flashd-coalesce-off"
	runHalfRate      = "flashd-half-rate"
	runEcho          = "echo"
	runRedisAlways   = "redis-lua-always"
	runRedisEverySec = "redis-lua-everysec"

	groupBench     = "bench"
	groupDoors     = "front doors"
	groupStores    = "stores" // an existing cluster's, leader and followers together
	groupLeader    = "store leader"
	groupFollowers = "store followers"
	groupEcho      = "echo servers"
	groupRedis     = "redis-server"

	itemSuffixOff     = "-nocoalesce"
	itemSuffixHalf    = "-halfrate"
	echoCampaignLabel = "echo" // the echo ignores it; sent for the message size
)

// Run runs the bench: flashd's runs, then the baselines, and returns the
// report. It stops everything it started before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Command: cfg.Command, Started: time.Now().UTC(), Workload: cfg.Workload, Machine: machine(),
		Client: cfg.clientDescription()}
	b := &bench{cfg: cfg, rep: rep, nonce: strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36)}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("--profile: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "flashctl-bench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	defer func() {
		if cfg.Keep {
			rep.Notes = append(rep.Notes, "kept "+dir+": data directories and logs of every process")
		} else {
			os.RemoveAll(dir)
		}
	}()

	if err := b.flashdRuns(ctx); err != nil {
		return nil, err
	}
	if slices.Contains(cfg.Baselines, BaselineEcho) {
		if err := b.echoRun(ctx); err != nil {
			return nil, err
		}
	}
	if slices.Contains(cfg.Baselines, BaselineRedisLua) {
		if err := b.redisRuns(ctx); err != nil {
			return nil, err
		}
	}
	rep.Machine.LoadAverageEnd = loadAverage()
	rep.Checks = checks(rep, cfg)
	return rep, nil
}

// bench is one Run in progress.
type bench struct {
	cfg   Config
	rep   *Report
	nonce string // makes this bench's users new to the store
	dir   string // data and logs of the processes it starts
	runs  int    // runs done, for the progress line
}

// system is what one run drives and watches.
type system struct {
	target       Target
	server       string                                      // what serves, for the report
	cpu          func() map[string]float64                   // CPU seconds so far, by process group
	serverCPU    []string                                    // the groups that answer claims (the sell-out's per-core figure)
	funnel       func(context.Context) localcluster.Funnel   // front doors' counters so far (nil: none)
	storeTraffic func(context.Context) (storeCounters, bool) // claim batches the stores received so far
	stock        func(context.Context, []string) (int64, bool)
	clientStats  func() client.Stats
	profiles     []profileSource // CPU profiled during the run, heap after
	noStock      bool            // grants whatever the stock (the echo): no sell-out to measure
}

// runSpec is one run to make.
type runSpec struct {
	name, title string
	items       []string
	load        load
}

// plannedRuns is how many runs the bench makes, for the progress line.
func (b *bench) plannedRuns() int {
	n := 1
	if b.cfg.CoalesceOff {
		n++
	}
	if b.cfg.HalfRate {
		n++
	}
	if slices.Contains(b.cfg.Baselines, BaselineEcho) {
		n++
	}
	if slices.Contains(b.cfg.Baselines, BaselineRedisLua) {
		n += 2
	}
	return n
}

// mainLoad is the load every run but the half-rate one uses.
func (b *bench) mainLoad() load {
	l := load{concurrency: b.cfg.Concurrency, rate: b.cfg.Rate, inFlightMax: b.cfg.InFlightMax,
		warmup: b.cfg.Warmup, duration: b.cfg.Duration, requestsMax: b.cfg.RequestsMax}
	if b.cfg.sellout() {
		l.warmup = 0 // the sale starts with the first claim
	}
	return l
}

// flashdRuns sets up flashd (a local cluster, or the given front doors)
// and makes its runs: the main one, at half its rate, coalescing off.
func (b *bench) flashdRuns(ctx context.Context) error {
	cfg := b.cfg
	if len(cfg.FrontDoors) > 0 {
		return b.externalRuns(ctx)
	}
	cl := &localcluster.Cluster{Binary: cfg.FlashdBinary, Dir: b.dir}
	defer cl.Stop()
	b.progressf("starting 3 store nodes and %d front doors on loopback (data and logs in %s)", cfg.LocalFrontDoors, b.dir)
	if err := cl.StartStores(ctx); err != nil {
		return err
	}
	bases := []string{cfg.Item}
	if cfg.CoalesceOff {
		bases = append(bases, cfg.Item+itemSuffixOff)
	}
	if cfg.HalfRate {
		bases = append(bases, cfg.Item+itemSuffixHalf)
	}
	var items []string
	for _, base := range bases {
		items = append(items, cfg.items(base)...)
	}
	if err := b.setup(ctx, cl.Store, items, true); err != nil {
		return err
	}
	if err := cl.StartDoors(ctx, cfg.LocalFrontDoors, doorPrefix); err != nil {
		return err
	}
	b.rep.System = fmt.Sprintf("local cluster: 3 store nodes (flashd store, fsync on, default flags) and %d front door(s) (flashd frontdoor, insecure-header auth, no rate limits) on loopback", cfg.LocalFrontDoors)
	main, err := b.localSystem(ctx, cl)
	if err != nil {
		return err
	}
	r, err := b.measure(ctx, runSpec{name: runFlashd, title: "flashd (front doors + 3-node store)", items: cfg.items(cfg.Item), load: b.mainLoad()}, main)
	main.close()
	if err != nil {
		return err
	}
	if cfg.HalfRate {
		if err := b.halfRate(ctx, r, cfg.items(cfg.Item+itemSuffixHalf), func(ctx context.Context) (*system, error) { return b.localSystem(ctx, cl) }); err != nil {
			return err
		}
	}
	if cfg.CoalesceOff {
		cl.StopDoors()
		if err := cl.StartDoors(ctx, cfg.LocalFrontDoors, coalesceOffPrefix, coalesceOffFlags...); err != nil {
			return err
		}
		off, err := b.localSystem(ctx, cl)
		if err != nil {
			return err
		}
		_, err = b.measure(ctx, runSpec{name: runCoalesceOff, title: "flashd, coalescing off (one store request per claim)",
			items: cfg.items(cfg.Item + itemSuffixOff), load: b.mainLoad()}, off)
		off.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// halfRate runs open loop at half the rate run r reached: the latency at
// a load the system sustains with room to spare.
func (b *bench) halfRate(ctx context.Context, r *RunReport, items []string, newSystem func(context.Context) (*system, error)) error {
	rate := math.Floor(r.GrantedPerSecond / 2)
	if rate < 1 {
		b.rep.Notes = append(b.rep.Notes, "half-rate run skipped: the main run granted nothing")
		return nil
	}
	sys, err := newSystem(ctx)
	if err != nil {
		return err
	}
	defer sys.close()
	l := b.mainLoad()
	l.rate, l.concurrency = rate, 0
	_, err = b.measure(ctx, runSpec{name: runHalfRate, title: fmt.Sprintf("flashd, open loop at half the measured rate (%s/s)", count(int64(rate))), items: items, load: l}, sys)
	return err
}

// close releases what a system holds for its run.
func (s *system) close() {
	if c, ok := s.target.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// localSystem is flashd on the local cluster, driven through the client
// library.
func (b *bench) localSystem(ctx context.Context, cl *localcluster.Cluster) (*system, error) {
	c, err := client.New(ctx, cl.DoorAddrs(), b.cfg.clientOptions()...)
	if err != nil {
		return nil, err
	}
	doors, stores := slices.Clone(cl.Doors), slices.Clone(cl.Stores)
	leader := leaderOf(ctx, cl)
	var followers []*localcluster.Process
	for _, s := range stores {
		if s != leader {
			followers = append(followers, s)
		}
	}
	sys := &system{
		target: b.target(c),
		server: b.rep.System,
		cpu: func() map[string]float64 {
			cpu := map[string]float64{groupBench: selfCPU(), groupDoors: procCPU(doors), groupFollowers: procCPU(followers)}
			if leader != nil {
				cpu[groupLeader] = leader.CPUSeconds()
			}
			return cpu
		},
		serverCPU:    []string{groupDoors},
		funnel:       func(ctx context.Context) localcluster.Funnel { return scrapeFunnel(ctx, httpAddrs(doors)) },
		clientStats:  c.Stats,
		storeTraffic: func(ctx context.Context) (storeCounters, bool) { return scrapeStores(ctx, httpAddrs(stores)) },
		stock:        b.stock(cl.Store),
	}
	if b.cfg.ProfileDir != "" {
		if leader != nil {
			sys.profiles = append(sys.profiles, profileSource{name: "store-leader-" + leader.Name, httpAddr: leader.HTTPAddr})
		}
		if len(followers) > 0 {
			sys.profiles = append(sys.profiles, profileSource{name: "store-follower-" + followers[0].Name, httpAddr: followers[0].HTTPAddr})
		}
		sys.profiles = append(sys.profiles, profileSource{name: "frontdoor-" + doors[0].Name, httpAddr: doors[0].HTTPAddr})
	}
	return sys, nil
}

// frontDoorClose is a frontDoorTarget that closes its client.
type frontDoorClose struct{ frontDoorTarget }

func (t *frontDoorClose) Close() error { return t.c.Close() }

func leaderOf(ctx context.Context, cl *localcluster.Cluster) *localcluster.Process {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	st, err := cl.Store.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		return nil
	}
	return cl.StoreByID(st.GetLeaderId())
}

// externalRuns drives existing front doors.
func (b *bench) externalRuns(ctx context.Context) error {
	cfg := b.cfg
	var st *client.Store
	if len(cfg.StoreEndpoints) > 0 {
		var err error
		if st, err = client.NewStore(cfg.StoreEndpoints, client.WithCallTimeout(setupTimeout)); err != nil {
			return err
		}
		defer st.Close()
	}
	items := cfg.items(cfg.Item)
	if cfg.HalfRate {
		items = append(items, cfg.items(cfg.Item+itemSuffixHalf)...)
	}
	if cfg.Setup {
		if err := b.setup(ctx, st, items, false); err != nil {
			return err
		}
	}
	if len(items) > 0 { // the cards workload has none to ask about
		if err := waitDoorsOpen(ctx, cfg.FrontDoors, cfg.Campaign, items); err != nil {
			return err
		}
	}
	b.rep.System = "existing front doors " + strings.Join(cfg.FrontDoors, ", ")
	newSystem := func(ctx context.Context) (*system, error) {
		c, err := client.New(ctx, cfg.FrontDoors, cfg.clientOptions()...)
		if err != nil {
			return nil, err
		}
		sys := &system{
			target: b.target(c),
			server: b.rep.System,
			cpu: func() map[string]float64 {
				out := map[string]float64{groupBench: selfCPU()}
				if cpu, ok := scrapeSum(context.Background(), cfg.FrontDoorMetrics, localcluster.CPUMetric); ok {
					out[groupDoors] = cpu
				}
				if cpu, ok := scrapeSum(context.Background(), cfg.StoreMetrics, localcluster.CPUMetric); ok {
					out[groupStores] = cpu
				}
				return out
			},
			serverCPU:   []string{groupDoors},
			clientStats: c.Stats,
		}
		if len(cfg.FrontDoorMetrics) > 0 {
			sys.funnel = func(ctx context.Context) localcluster.Funnel { return scrapeFunnel(ctx, cfg.FrontDoorMetrics) }
		}
		if len(cfg.StoreMetrics) > 0 {
			sys.storeTraffic = func(ctx context.Context) (storeCounters, bool) { return scrapeStores(ctx, cfg.StoreMetrics) }
		}
		if st != nil {
			sys.stock = b.stock(st)
		}
		if cfg.ProfileDir != "" {
			for i, addr := range cfg.StoreMetrics {
				sys.profiles = append(sys.profiles, profileSource{name: fmt.Sprintf("store-%d", i+1), httpAddr: addr})
			}
			if len(cfg.FrontDoorMetrics) > 0 {
				sys.profiles = append(sys.profiles, profileSource{name: "frontdoor-1", httpAddr: cfg.FrontDoorMetrics[0]})
			}
		}
		return sys, nil
	}
	sys, err := newSystem(ctx)
	if err != nil {
		return err
	}
	r, err := b.measure(ctx, runSpec{name: runFlashd, title: "flashd (existing front doors)", items: cfg.items(cfg.Item), load: b.mainLoad()}, sys)
	sys.close()
	if err != nil {
		return err
	}
	if cfg.HalfRate {
		return b.halfRate(ctx, r, cfg.items(cfg.Item+itemSuffixHalf), newSystem)
	}
	return nil
}

// doorsOpenTimeout bounds the wait for running front doors to see the
// campaign open (they learn it from the store's watch stream).
const doorsOpenTimeout = 15 * time.Second

// waitDoorsOpen waits until every front door says the campaign is open
// and knows the first and last item, so that no run starts with refusals
// the doors make only because the news has not reached them yet.
func waitDoorsOpen(ctx context.Context, doors []string, campaign string, items []string) error {
	ctx, cancel := context.WithTimeout(ctx, doorsOpenTimeout)
	defer cancel()
	for _, door := range doors {
		c, err := client.New(ctx, []string{door}, client.WithMaxAttempts(1))
		if err != nil {
			return err
		}
		err = waitDoorOpen(ctx, c, campaign, []string{items[0], items[len(items)-1]})
		c.Close()
		if err != nil {
			return fmt.Errorf("front door %s: %w (create them with --setup, or open the campaign)", door, err)
		}
	}
	return nil
}

func waitDoorOpen(ctx context.Context, c *client.Client, campaign string, items []string) error {
	for {
		var last error
		open := 0
		for _, item := range items {
			it, err := c.GetItem(ctx, campaign, item)
			switch {
			case err != nil:
				last = fmt.Errorf("item %s of campaign %s: %w", item, campaign, err)
			case it.GetCampaignState() != pb.CampaignState_CAMPAIGN_STATE_OPEN:
				last = fmt.Errorf("campaign %s is %s", campaign, it.GetCampaignState())
			default:
				open++
			}
		}
		if open == len(items) {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// workload is the requests of the run named run: its users are its own.
func (b *bench) workload(run string, items []string) *workload {
	return &workload{userPrefix: "b" + b.nonce + "-" + run + "-", users: b.cfg.Users, items: items}
}

// setup creates the campaign and the items (or, for cards, the cards and
// the main run's users' draw chances).
func (b *bench) setup(ctx context.Context, st *client.Store, items []string, fresh bool) error {
	if b.cfg.Workload == WorkloadCards {
		b.progressf("granting %s users %d draw chances each", count(b.cfg.Users), b.cfg.Draws)
		return setupCards(ctx, st, b.cfg.Campaign, b.cfg.Stock, b.cfg.Draws, b.workload(runFlashd, nil), fresh)
	}
	return setupCampaign(ctx, st, b.cfg.Campaign, items, b.cfg.Stock, fresh)
}

// target is what claims (or draws) through client c.
func (b *bench) target(c *client.Client) Target {
	if b.cfg.Workload == WorkloadCards {
		return &cardsTarget{c: c, campaign: b.cfg.Campaign, full: make([]atomic.Bool, b.cfg.Users)}
	}
	return &frontDoorClose{frontDoorTarget{c: c, campaign: b.cfg.Campaign}}
}

// stock reads the units left (the rewards left, for cards) from st.
func (b *bench) stock(st *client.Store) func(context.Context, []string) (int64, bool) {
	if b.cfg.Workload == WorkloadCards {
		return func(ctx context.Context, _ []string) (int64, bool) { return rewardsLeft(ctx, st, b.cfg.Campaign) }
	}
	return func(ctx context.Context, items []string) (int64, bool) {
		return storeStock(ctx, st, b.cfg.Campaign, items)
	}
}

// setupCampaign creates an open flash-sale campaign with items of stock
// units each, one unit per user. On a cluster of its own (fresh) the bench
// also lifts every rate limit of the front doors; on an existing one, a
// campaign or item that already exists is kept as it is.
func setupCampaign(ctx context.Context, st *client.Store, campaign string, items []string, stock int64, fresh bool) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout+time.Duration(len(items))*100*time.Millisecond)
	defer cancel()
	_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: campaign, Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "flashctl bench",
		Start: timestamppb.Now(), PerUserLimit: 1, ReservationTtl: durationpb.New(reservationTTL),
	}})
	if err != nil && !(errors.Is(err, client.ErrAlreadyExists) && !fresh) {
		return fmt.Errorf("create campaign %s: %w", campaign, err)
	}
	for _, item := range items {
		_, err := st.AddItem(ctx, &pb.AddItemRequest{CampaignId: campaign, ItemId: item, Stock: uint64(stock)})
		if err != nil && !(errors.Is(err, client.ErrAlreadyExists) && !fresh) {
			return fmt.Errorf("add item %s: %w", item, err)
		}
	}
	open := pb.CampaignState_CAMPAIGN_STATE_OPEN
	if _, err := st.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: campaign, State: &open}); err != nil {
		return fmt.Errorf("open campaign %s: %w", campaign, err)
	}
	if fresh {
		if _, err := st.SetFrontDoorConfig(ctx, &pb.SetFrontDoorConfigRequest{Config: &pb.FrontDoorConfig{}}); err != nil {
			return fmt.Errorf("lift the front doors' limits: %w", err)
		}
	}
	return nil
}

// echoRun drives echo servers, as many as front doors, through the same
// client library.
func (b *bench) echoRun(ctx context.Context) error {
	n := b.cfg.LocalFrontDoors
	if len(b.cfg.FrontDoors) > 0 {
		n = len(b.cfg.FrontDoors)
	}
	addrs, err := localcluster.FreeAddrs(2 * n)
	if err != nil {
		return err
	}
	var servers []*localcluster.Process
	defer func() {
		for _, p := range servers {
			p.Stop()
		}
	}()
	var grpcAddrs []string
	for i := range n {
		p := &localcluster.Process{Name: fmt.Sprintf("echo%d", i+1), GRPCAddr: addrs[2*i], HTTPAddr: addrs[2*i+1],
			Log:  fmt.Sprintf("%s/echo%d.log", b.dir, i+1),
			Args: []string{"bench", "echo-server", "--grpc-addr", addrs[2*i], "--http-addr", addrs[2*i+1]}}
		if err := p.Start(b.cfg.SelfBinary); err != nil {
			return err
		}
		servers = append(servers, p)
		grpcAddrs = append(grpcAddrs, p.GRPCAddr)
	}
	wctx, cancel := context.WithTimeout(ctx, localcluster.ServingTimeout)
	defer cancel()
	for _, p := range servers {
		if err := localcluster.WaitServing(wctx, p, pb.FrontDoor_ServiceDesc.ServiceName); err != nil {
			return err
		}
	}
	c, err := client.New(ctx, grpcAddrs, b.cfg.clientOptions()...)
	if err != nil {
		return err
	}
	sys := &system{
		noStock: true,
		target:  &frontDoorClose{frontDoorTarget{c: c, campaign: echoCampaignLabel}},
		server:  fmt.Sprintf("%d echo server(s) (flashd.v1.FrontDoor, every claim granted at once, no store) on loopback", n),
		cpu: func() map[string]float64 {
			return map[string]float64{groupBench: selfCPU(), groupEcho: procCPU(servers)}
		},
		serverCPU:   []string{groupEcho},
		clientStats: c.Stats,
	}
	if b.cfg.ProfileDir != "" {
		sys.profiles = []profileSource{{name: "echo-" + servers[0].Name, httpAddr: servers[0].HTTPAddr}}
	}
	defer sys.close()
	_, err = b.measure(ctx, runSpec{name: runEcho, title: "echo baseline (one gRPC hop, same client)", items: b.cfg.items(b.cfg.Item), load: b.mainLoad()}, sys)
	return err
}

// redisRuns drives Redis with the Lua script: appendfsync always, then
// everysec, each on a fresh server.
func (b *bench) redisRuns(ctx context.Context) error {
	bin, err := findRedis(b.cfg.RedisServer)
	if err != nil {
		return err
	}
	for _, run := range []struct{ name, fsync string }{{runRedisAlways, fsyncAlways}, {runRedisEverySec, fsyncEverySec}} {
		if err := b.redisRun(ctx, bin, run.name, run.fsync); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) redisRun(ctx context.Context, bin, name, fsync string) error {
	p, err := startRedis(ctx, bin, b.dir, name, fsync)
	if err != nil {
		return err
	}
	defer p.Stop()
	l := b.mainLoad()
	t := newRedisTarget(p.GRPCAddr, max(l.concurrency, min(l.inFlightMax, redisPoolMax)))
	items := b.cfg.items(b.cfg.Item)
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	err = t.setup(sctx, items, b.cfg.Stock)
	cancel()
	if err != nil {
		t.Close()
		return err
	}
	sys := &system{
		target: t,
		server: fmt.Sprintf("redis-server %s on loopback, appendonly yes, appendfsync %s, Lua claim script (go-redis, a connection per claim in flight)", redisVersion(bin), fsync),
		cpu: func() map[string]float64 {
			return map[string]float64{groupBench: selfCPU(), groupRedis: p.CPUSeconds()}
		},
		serverCPU: []string{groupRedis},
		stock: func(ctx context.Context, items []string) (int64, bool) {
			n, err := t.stock(ctx, items)
			return n, err == nil
		},
	}
	defer sys.close()
	_, err = b.measure(ctx, runSpec{name: name, title: "Redis + Lua, appendfsync " + fsync, items: items, load: l}, sys)
	return err
}

// machine describes this machine now.
func machine() Machine {
	return Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version(), LoadAverageStart: loadAverage()}
}

// loadAverage reads /proc/loadavg (zeros where it cannot).
func loadAverage() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

// selfCPU is the CPU seconds this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func procCPU(list []*localcluster.Process) float64 {
	var sum float64
	for _, p := range list {
		sum += p.CPUSeconds()
	}
	return sum
}

func httpAddrs(list []*localcluster.Process) []string {
	var out []string
	for _, p := range list {
		out = append(out, p.HTTPAddr)
	}
	return out
}

// scrapeFunnel sums the funnel counters of the front doors that answer.
func scrapeFunnel(ctx context.Context, addrs []string) localcluster.Funnel {
	f := localcluster.Funnel{}
	for _, addr := range addrs {
		if samples, err := localcluster.Scrape(ctx, addr); err == nil {
			f.AddSamples(samples)
		}
	}
	return f
}

// scrapeSum sums metric over the processes at addrs; false if one did
// not answer.
func scrapeSum(ctx context.Context, addrs []string, metric string) (float64, bool) {
	var sum float64
	for _, addr := range addrs {
		samples, err := localcluster.Scrape(ctx, addr)
		if err != nil {
			return 0, false
		}
		sum += localcluster.Sum(samples, metric)
	}
	return sum, len(addrs) > 0
}

// storeCounters is what the store nodes counted of claim batches and draw
// batches (the cards workload's), summed over nodes (only a leader counts).
type storeCounters struct {
	batches, claims float64
}

// scrapeStores reads the store nodes' batch counters; false if one did
// not answer.
func scrapeStores(ctx context.Context, addrs []string) (storeCounters, bool) {
	var c storeCounters
	for _, addr := range addrs {
		samples, err := localcluster.Scrape(ctx, addr)
		if err != nil {
			return storeCounters{}, false
		}
		c.batches += localcluster.Sum(samples, localcluster.StoreBatchesMetric) + localcluster.Sum(samples, localcluster.StoreDrawBatchesMetric)
		c.claims += localcluster.Sum(samples, localcluster.StoreBatchClaimsMetric) + localcluster.Sum(samples, localcluster.StoreDrawBatchDrawsMetric)
	}
	return c, len(addrs) > 0
}

// storeStock sums the units available over items (a stale read).
func storeStock(ctx context.Context, st *client.Store, campaign string, items []string) (int64, bool) {
	res, err := st.GetCampaign(ctx, &pb.GetCampaignRequest{CampaignId: campaign, Consistency: pb.Consistency_CONSISTENCY_STALE})
	if err != nil {
		return 0, false
	}
	var sum int64
	for _, it := range res.GetItems() {
		if slices.Contains(items, it.GetId()) {
			sum += int64(it.GetAvailable())
		}
	}
	return sum, true
}

// redisVersion asks the binary its version ("" if it will not say).
func redisVersion(bin string) string {
	out, err := execOutput(bin, "--version")
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return ""
}
