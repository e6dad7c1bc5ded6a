package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flashd/flashd/cmd/flashctl/internal/bench"
)

// Defaults of flashctl bench.
const (
	benchStockSellout = 20_000
	benchStockLarge   = 1_000_000_000 // sustained and many-items: never runs out
	benchRewards      = 1_000         // cards: the reward pool
	benchCardUsers    = 1_000         // cards: users, each granted --draws first
)

// benchFlags are bench's flags beyond bench.Config.
type benchFlags struct {
	coalesce string
	batching string
	report   string
	json     string
	from     string
}

func newBenchCmd(g *globals, getenv func(string) string) *cobra.Command {
	cfg := bench.Config{
		Workload: bench.WorkloadSustained, Campaign: "bench", Item: "hot", Items: 100,
		Concurrency: 256, InFlightMax: 10_000, Warmup: time.Second, Duration: 10 * time.Second,
		RequestsMax: 100_000_000, LocalFrontDoors: 1,
	}
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load flashd through the client library and measure it: claims/s, latency, the funnel, against baselines",
		Long: `Drive claims through the front doors with the client library and measure what
users of a flash-sale store care about: claims per second on one hot item, tail
latency under load, and how cheaply the excess is turned away.

Without --frontdoor the bench starts its own cluster on loopback (3 store nodes
with fsync, --front-doors front doors; the flashd binary next to flashctl, or
--flashd-binary) and stops it at the end. With --frontdoor it drives running
front doors; the campaign and items must exist, or --setup creates them through
--endpoints.

Workloads:
  sustained   one hot item whose stock does not run out, every claim from a new
              user (the write path): granted claims per second
  sellout     one hot item with --stock units and many more users: time to sell
              out, then how fast and how cheaply the front doors refuse the rest
              (per front-door CPU second, and the store traffic: none)
  many-items  claims spread over --items items
  cards       a card-collect campaign (3 card types, a pool of --stock rewards):
              --users users, each granted --draws chances first, draw, and
              redeem a full set as soon as they hold one (draws are the
              "granted" answers, redemptions "redeemed")

Load: closed loop with --concurrency claims in flight, or open loop at --rate
claims per second (latency measured from the intended send time, so queueing is
never hidden; at most --max-in-flight in flight). Latencies go into
HdrHistograms (p50 to max), per run and per second.

Comparisons, run one after another in the same bench on the same machine:
  --baseline echo        a no-op FrontDoor service, same messages, same client:
                         one gRPC hop, the ceiling of any front door here
  --baseline redis-lua   Redis (appendonly, appendfsync always, then everysec)
                         with a Lua script that checks the user set and
                         decrements the stock (make bench-deps installs it)
  --coalesce off         the front doors with coalescing off (one store request
                         per claim)
  --client-batching off  every claim its own unary call from the client library
                         (by default concurrent claims share ClaimMany calls)
  --half-rate            open loop at half the rate reached: the latency there
The table ends with the ratios and the targets they are held to.`,
		Example: `  flashctl bench --workload sustained --duration 10s --baseline echo,redis-lua --coalesce off --half-rate
  flashctl bench --workload sellout --stock 20000 --duration 10s --report sellout.html
  flashctl bench --workload sustained --rate 5000 --duration 30s -o json
  flashctl bench --frontdoor 127.0.0.1:8001,127.0.0.1:8002 --frontdoor-metrics 127.0.0.1:8201,127.0.0.1:8202 \
      --campaign spring --item lantern --setup --endpoints 127.0.0.1:7001 --workload sellout --stock 1000
  flashctl bench --workload sustained --profile prof/   # CPU and heap profiles of the store leader, a front door, the bench`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd, g, getenv, cfg, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Workload, "workload", cfg.Workload, "sustained, sellout, many-items or cards")
	fl.StringSliceVar(&cfg.FrontDoors, "frontdoor", nil, "gRPC addresses of running front doors, comma-separated (default: start a local cluster)")
	fl.StringSliceVar(&cfg.FrontDoorMetrics, "frontdoor-metrics", nil, "HTTP addresses of those front doors: funnel, CPU and profiles")
	fl.StringSliceVar(&cfg.StoreMetrics, "store-metrics", nil, "HTTP addresses of the store nodes: store traffic, CPU and profiles")
	fl.BoolVar(&cfg.Setup, "setup", false, "with --frontdoor: create the campaign and items through --endpoints (an existing one is kept as is)")
	fl.StringVar(&cfg.Campaign, "campaign", cfg.Campaign, "campaign ID")
	fl.StringVar(&cfg.Item, "item", cfg.Item, "item ID (many-items: ITEM-0, ITEM-1, ...; each comparison run of a local cluster gets its own item)")
	fl.IntVar(&cfg.Items, "items", cfg.Items, "many-items: how many items")
	fl.Int64Var(&cfg.Stock, "stock", 0, fmt.Sprintf("units of each item (default %d for sellout, %d otherwise); cards: rewards in the pool (default %d)", benchStockSellout, benchStockLarge, benchRewards))
	fl.Int64Var(&cfg.Users, "users", 0, fmt.Sprintf("distinct users, claims cycling over them (0: every claim from a new user; cards: default %d)", benchCardUsers))
	fl.IntVar(&cfg.Draws, "draws", 10, "cards: draw chances granted to every user before the run")
	fl.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "closed loop: claims in flight")
	fl.Float64Var(&cfg.Rate, "rate", 0, "open loop: claims per second (latency from the intended send time)")
	fl.IntVar(&cfg.InFlightMax, "max-in-flight", cfg.InFlightMax, "open loop: claims in flight at most (later ones wait, and the wait counts)")
	fl.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "load before the measurement, not counted (none for sellout)")
	fl.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time of each run")
	fl.Int64Var(&cfg.RequestsMax, "requests", cfg.RequestsMax, "claims per run at most, warm-up included")
	fl.IntVar(&cfg.LocalFrontDoors, "front-doors", cfg.LocalFrontDoors, "local cluster: front doors (and echo servers)")
	fl.StringSliceVar(&cfg.Baselines, "baseline", nil, "baselines to run too: echo, redis-lua")
	fl.StringVar(&f.coalesce, "coalesce", "on", "off: also run with the front doors' coalescing off, and compare")
	fl.StringVar(&f.batching, "client-batching", "on", "off: the client library sends every claim as its own unary call (no ClaimMany), in every run")
	fl.BoolVar(&cfg.HalfRate, "half-rate", false, "also run open loop at half the rate the main run reached, for its latency")
	fl.StringVar(&cfg.ProfileDir, "profile", "", "save CPU profiles (over each run) and heap profiles of the store leader, a front door and the bench in this directory")
	fl.StringVar(&f.report, "report", "", "write a self-contained HTML report with charts to this file")
	fl.StringVar(&f.json, "json", "", "write the JSON document to this file too (whatever -o says)")
	fl.StringVar(&f.from, "from", "", "run nothing: show the report of an earlier bench from its JSON document (with --report, -o)")
	fl.StringVar(&cfg.FlashdBinary, "flashd-binary", "", "flashd binary for the local cluster (default: flashd next to flashctl, or on PATH)")
	fl.StringVar(&cfg.RedisServer, "redis-server", "", "redis-server binary (default: on PATH)")
	fl.BoolVar(&cfg.Keep, "keep", false, "keep the local processes' data directories and logs")
	cmd.MarkFlagsMutuallyExclusive("concurrency", "rate")
	cmd.AddCommand(newBenchEchoServerCmd())
	return cmd
}

func runBench(cmd *cobra.Command, g *globals, getenv func(string) string, cfg bench.Config, f benchFlags) error {
	switch f.coalesce {
	case "on":
	case "off":
		cfg.CoalesceOff = true
	default:
		return fmt.Errorf("--coalesce %q: want on or off", f.coalesce)
	}
	switch f.batching {
	case "on":
	case "off":
		cfg.UnaryClaims = true
	default:
		return fmt.Errorf("--client-batching %q: want on or off", f.batching)
	}
	if cfg.Stock == 0 {
		switch cfg.Workload {
		case bench.WorkloadSellout:
			cfg.Stock = benchStockSellout
		case bench.WorkloadCards:
			cfg.Stock = benchRewards
		default:
			cfg.Stock = benchStockLarge
		}
	}
	if cfg.Users == 0 && cfg.Workload == bench.WorkloadCards {
		cfg.Users = benchCardUsers
	}
	if len(cfg.FrontDoors) > 0 && (cmd.Flags().Changed("endpoints") || getenv(endpointsEnv) != "" || cfg.Setup) {
		cfg.StoreEndpoints = g.endpoints
	}
	if len(cfg.FrontDoors) == 0 && cfg.FlashdBinary == "" {
		cfg.FlashdBinary = findFlashd()
	}
	if self, err := os.Executable(); err == nil {
		cfg.SelfBinary = self
	}
	cfg.Command = commandLine(cmd)
	stderr := cmd.ErrOrStderr()
	cfg.Progress = stderr
	cfg.Live = stderr == os.Stderr && isTerminal(os.Stderr)
	// Fail before the runs, not after them.
	for flag, path := range map[string]string{"--report": f.report, "--json": f.json} {
		if path == "" {
			continue
		}
		if err := checkWritable(path); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}

	var rep *bench.Report
	if f.from != "" {
		var err error
		if rep, err = readReport(f.from); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	} else {
		if err := cfg.Validate(); err != nil {
			return err
		}
		g.calledCluster = true
		var err error
		if rep, err = bench.Run(cmd.Context(), cfg); err != nil {
			return err
		}
	}
	if f.report != "" {
		if err := writeFile(f.report, rep.WriteHTML); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		fmt.Fprintf(stderr, "report: %s\n", f.report)
	}
	if f.json != "" {
		if err := writeFile(f.json, rep.WriteJSON); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if g.output == outputJSON {
		return rep.WriteJSON(g.stdout)
	}
	return rep.WriteTable(g.stdout)
}

// readReport reads a report's JSON document.
func readReport(path string) (*bench.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(file); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

func checkWritable(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// findFlashd returns the flashd binary beside this flashctl, else the one
// on PATH, else "" (the bench then says what to do).
func findFlashd() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "flashd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("flashd"); err == nil {
		return p
	}
	return ""
}

// commandLine is the command as given, its flags in a canonical order:
// what the report says produced its figures.
func commandLine(cmd *cobra.Command) string {
	parts := []string{cmd.CommandPath()}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		v := fl.Value.String()
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			v = strings.Join(sv.GetSlice(), ",")
		}
		if fl.Value.Type() == "bool" && v == "true" {
			parts = append(parts, "--"+fl.Name)
			return
		}
		parts = append(parts, "--"+fl.Name, v)
	})
	return strings.Join(parts, " ")
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newBenchEchoServerCmd is the echo baseline's server, which the bench
// starts as a child process of its own: not for people.
func newBenchEchoServerCmd() *cobra.Command {
	var grpcAddr, httpAddr string
	cmd := &cobra.Command{
		Use:    "echo-server",
		Short:  "Serve the echo baseline (flashd.v1.FrontDoor granting every claim at once); flashctl bench starts it",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.ServeEcho(cmd.Context(), grpcAddr, httpAddr)
		},
	}
	cmd.Flags().StringVar(&grpcAddr, "grpc-addr", "127.0.0.1:0", "gRPC address")
	cmd.Flags().StringVar(&httpAddr, "http-addr", "", "HTTP address for /metrics and /debug/pprof (empty: none)")
	return cmd
}
