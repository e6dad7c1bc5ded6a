package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/flashd/flashd/client"
)

// Workloads.
const (
	WorkloadSellout   = "sellout"    // a hot item with limited stock, many more users than units
	WorkloadSustained = "sustained"  // a hot item whose stock does not run out: grants per second
	WorkloadManyItems = "many-items" // claims spread over many items
	WorkloadCards     = "cards"      // card-collect draws and redemptions
)

// Workloads lists them, for help and errors.
var Workloads = []string{WorkloadSellout, WorkloadSustained, WorkloadManyItems, WorkloadCards}

// Baselines.
const (
	BaselineEcho     = "echo"      // a no-op FrontDoor service: one gRPC hop
	BaselineRedisLua = "redis-lua" // Redis with a Lua claim script, appendfsync always and everysec
)

// Loop modes.
const (
	modeClosed = "closed"
	modeOpen   = "open"
)

// Limits of Config.
const (
	concurrencyMax = 16384
	inFlightMax    = 65536
	rateMax        = 10_000_000
	durationMax    = 10 * time.Minute
	itemsMax       = 10_000
	frontDoorsMax  = 8
	requestsMax    = 1_000_000_000
	usersMax       = 1_000_000_000
	stockMax       = 1_000_000_000
	idMax          = 64        // campaign and item IDs; the item gets a suffix per run
	cardUsersMax   = 1_000_000 // cards: users granted draws before the run
	drawsMax       = 1000
)

// Config is one `flashctl bench`. Validate says what is wrong with it.
type Config struct {
	Workload string

	// FrontDoors are existing front doors (gRPC addresses); empty: the
	// bench starts a local cluster of its own.
	FrontDoors []string
	// FrontDoorMetrics and StoreMetrics are the HTTP addresses of existing
	// front doors and store nodes, for the funnel, CPU, store traffic and
	// profiles (optional).
	FrontDoorMetrics []string
	StoreMetrics     []string
	// StoreEndpoints are store nodes (gRPC) of an existing cluster: the
	// stock left over time, and --setup.
	StoreEndpoints []string
	Setup          bool // create the campaign and items on the existing cluster

	Campaign, Item string
	Items          int   // many-items: items, named Item-0, Item-1, ...
	Stock          int64 // units of each item (sellout: the hot item's stock)
	Users          int64 // distinct users; 0: every claim from a new user
	Draws          int   // cards: draw chances granted to every user

	Concurrency int     // closed loop: claims in flight
	Rate        float64 // open loop: claims per second (0: closed loop)
	InFlightMax int     // open loop: claims in flight at most
	Warmup      time.Duration
	Duration    time.Duration
	RequestsMax int64 // bound on the claims of a run, warm-up included

	LocalFrontDoors int      // front doors of the local cluster
	Baselines       []string // BaselineEcho, BaselineRedisLua
	CoalesceOff     bool     // also run with the front doors' coalescing off (local cluster only)
	UnaryClaims     bool     // the client library sends each claim as its own call (no ClaimMany)
	HalfRate        bool     // also run open loop at half the measured rate: the latency there

	ProfileDir   string // CPU and heap profiles of the servers and the bench
	FlashdBinary string // for the local cluster
	SelfBinary   string // flashctl, for the echo servers
	RedisServer  string // redis-server binary ("" : from PATH)
	Keep         bool   // keep the local cluster's data and logs

	Command  string    // the command line, for the report
	Progress io.Writer // the progress bar or lines (nil: none)
	Live     bool      // Progress is a terminal: redraw one line
}

func (c *Config) Validate() error {
	switch {
	case !slices.Contains(Workloads, c.Workload):
		return fmt.Errorf("--workload %q: want one of %v", c.Workload, Workloads)
	case c.Campaign == "" || len(c.Campaign) > idMax || c.Item == "" || len(c.Item) > idMax:
		return fmt.Errorf("--campaign and --item must be 1 to %d characters", idMax)
	case c.Items < 1 || c.Items > itemsMax:
		return fmt.Errorf("--items %d: must be in [1, %d]", c.Items, itemsMax)
	case c.Stock < 1 || c.Stock > stockMax:
		return fmt.Errorf("--stock %d: must be in [1, %d]", c.Stock, stockMax)
	case c.Users < 0 || c.Users > usersMax:
		return fmt.Errorf("--users %d: must be in [0, %d] (0: a new user for every claim)", c.Users, usersMax)
	case c.Rate < 0 || c.Rate > rateMax:
		return fmt.Errorf("--rate %v: must be in [0, %d]", c.Rate, rateMax)
	case c.Rate == 0 && (c.Concurrency < 1 || c.Concurrency > concurrencyMax):
		return fmt.Errorf("--concurrency %d: must be in [1, %d]", c.Concurrency, concurrencyMax)
	case c.InFlightMax < 1 || c.InFlightMax > inFlightMax:
		return fmt.Errorf("--max-in-flight %d: must be in [1, %d]", c.InFlightMax, inFlightMax)
	case c.Duration < 100*time.Millisecond || c.Duration > durationMax:
		return fmt.Errorf("--duration %v: must be in [100ms, %v]", c.Duration, durationMax)
	case c.Warmup < 0 || c.Warmup > durationMax:
		return fmt.Errorf("--warmup %v: must be in [0, %v]", c.Warmup, durationMax)
	case c.RequestsMax < 1 || c.RequestsMax > requestsMax:
		return fmt.Errorf("--requests %d: must be in [1, %d]", c.RequestsMax, requestsMax)
	case len(c.FrontDoors) == 0 && (c.LocalFrontDoors < 1 || c.LocalFrontDoors > frontDoorsMax):
		return fmt.Errorf("--front-doors %d: must be in [1, %d]", c.LocalFrontDoors, frontDoorsMax)
	case len(c.FrontDoors) > 0 && c.CoalesceOff:
		return errors.New("--coalesce off needs the bench's own cluster (no --frontdoor): a running front door's batching is set by its flags (--batch-max 1 turns it off)")
	case len(c.FrontDoors) > 0 && c.Setup && len(c.StoreEndpoints) == 0:
		return errors.New("--setup needs the store nodes (--endpoints) to create the campaign and items")
	case c.HalfRate && c.Rate > 0:
		return errors.New("--half-rate follows a closed-loop run (it offers half the rate that run reached): drop --rate")
	case c.Workload == WorkloadCards && (c.Users < 1 || c.Users > cardUsersMax):
		return fmt.Errorf("--users %d: the cards workload grants draws to every user first: must be in [1, %d]", c.Users, cardUsersMax)
	case c.Workload == WorkloadCards && (c.Draws < 1 || c.Draws > drawsMax):
		return fmt.Errorf("--draws %d: must be in [1, %d]", c.Draws, drawsMax)
	case c.Workload == WorkloadCards && (len(c.Baselines) > 0 || c.CoalesceOff || c.HalfRate):
		return errors.New("the cards workload runs flashd alone: --baseline, --coalesce off and --half-rate compare claims")
	case c.Workload == WorkloadCards && len(c.FrontDoors) > 0 && !c.Setup:
		return errors.New("the cards workload grants its users draw chances first: give --setup (and --endpoints)")
	case c.HalfRate && c.Workload == WorkloadSellout:
		return errors.New("--half-rate measures latency at a sustainable rate: use it with sustained or many-items, whose stock does not run out")
	}
	for _, b := range c.Baselines {
		if b != BaselineEcho && b != BaselineRedisLua {
			return fmt.Errorf("--baseline %q: want %s or %s", b, BaselineEcho, BaselineRedisLua)
		}
	}
	if len(c.FrontDoors) == 0 && c.FlashdBinary == "" {
		return errors.New("no flashd binary to start a local cluster with: build it (make build) or give --flashd-binary, or point at running front doors with --frontdoor")
	}
	if slices.Contains(c.Baselines, BaselineEcho) && c.SelfBinary == "" {
		return errors.New("no flashctl binary to run the echo servers")
	}
	return nil
}

// sellout reports whether the workload runs the stock out.
func (c *Config) sellout() bool { return c.Workload == WorkloadSellout }

// items returns the item IDs of a run whose item base name is base
// (none for cards).
func (c *Config) items(base string) []string {
	switch c.Workload {
	case WorkloadCards:
		return nil
	case WorkloadManyItems:
	default:
		return []string{base}
	}
	out := make([]string, c.Items)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", base, i)
	}
	return out
}

// clientOptions are the options of the clients the bench claims through.
func (c *Config) clientOptions() []client.Option {
	if c.UnaryClaims {
		return []client.Option{client.WithoutClaimBatching()}
	}
	return nil
}

// clientDescription says how the bench's client sends claims, for the report.
func (c *Config) clientDescription() string {
	if c.UnaryClaims {
		return "client library with --client-batching off: one unary FrontDoor.Claim call per claim"
	}
	return "client library defaults: concurrent claims share FrontDoor.ClaimMany calls (up to 256 claims a call, 4 calls in flight per front door)"
}
