package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/cmd/flashd/internal/demo"
)

// The card-collect event's defaults: every user is granted draws by a
// service call first, so the crowd is smaller than the sale's; a user draws
// several cards in a row, so the per-user rate is higher.
const (
	cardUsers       = 5_000
	cardPerUserRate = 10
)

func newDemoCmd() *cobra.Command {
	cfg := demo.Config{
		Users: 200_000, Stock: 3_000, Items: 3, PerUserLimit: 1, Duration: 30 * time.Second,
		Waves: 3, WaveInterval: 4 * time.Second, GlobalRate: 3_000, PerUserRate: 2, DropFraction: 0.3,
		Concurrency: 128, FrontDoors: 2,
	}
	var plain bool
	var event string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a flash sale on a local cluster: 3 store nodes, 2 front doors, a simulated crowd",
		Long: `Start, on loopback with temporary data directories, a 3-node store cluster in
3 regions and front doors (as child processes of this one), open a flash sale,
and drive a simulated crowd at it through the client library. It shows the
stock left, requests per second, the funnel and the store leader while it runs,
then checks the store (no oversell, every acknowledged claim present, no user
over the limit, replicas identical), prints a summary, and stops everything.
--chaos kills the store leader (kill -9) mid-sale and restarts it later.`,
		Example: `  flashd demo
  flashd demo --chaos
  flashd demo --users 20000 --stock 500 --duration 10s --degrade-level 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Binary == "" {
				bin, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find the flashd binary: %w", err)
				}
				cfg.Binary = bin
			}
			cfg.Out = cmd.OutOrStdout()
			cfg.Live = !plain && isTerminal(os.Stdout) && cfg.Out == os.Stdout
			switch event {
			case "flash-sale":
				return demo.Run(cmd.Context(), cfg)
			case "card-collect":
				if !cmd.Flags().Changed("users") {
					cfg.Users = cardUsers
				}
				if !cmd.Flags().Changed("per-user-rate") {
					cfg.PerUserRate = cardPerUserRate
				}
				return demo.RunCards(cmd.Context(), cfg)
			}
			return fmt.Errorf("--event %q: want flash-sale or card-collect", event)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Users, "users", cfg.Users, "simulated users")
	fl.IntVar(&cfg.Stock, "stock", cfg.Stock, "units on sale, over all items (shared by popularity)")
	fl.IntVar(&cfg.Items, "items", cfg.Items, "items on sale (1-8)")
	fl.IntVar(&cfg.PerUserLimit, "per-user-limit", cfg.PerUserLimit, "units per user and item")
	fl.DurationVar(&cfg.Duration, "duration", cfg.Duration, "bound on the sale: the crowd stops after it (users arrive over its first half)")
	fl.IntVar(&cfg.Waves, "waves", cfg.Waves, "staggered entry waves (users hashed into waves)")
	fl.DurationVar(&cfg.WaveInterval, "wave-interval", cfg.WaveInterval, "time between wave openings")
	fl.Float64Var(&cfg.GlobalRate, "global-rate", cfg.GlobalRate, "claims per second all front doors admit together (0: no limit)")
	fl.Float64Var(&cfg.PerUserRate, "per-user-rate", cfg.PerUserRate, "claims per second per user (0: no limit)")
	fl.IntVar(&cfg.DegradeLevel, "degrade-level", cfg.DegradeLevel, "degradation level: 0 none, 1 adaptive limit, 2 front doors drop --drop-fraction, 3 clients drop it")
	fl.Float64Var(&cfg.DropFraction, "drop-fraction", cfg.DropFraction, "share of claims dropped at degradation levels 2 and 3")
	fl.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "presses in flight at once")
	fl.IntVar(&cfg.FrontDoors, "front-doors", cfg.FrontDoors, "front doors")
	fl.StringVar(&event, "event", "flash-sale", "flash-sale, or card-collect (users draw cards and redeem full sets; 5,000 users and 10 calls/s per user unless set)")
	fl.BoolVar(&cfg.Chaos, "chaos", false, "kill -9 the store leader mid-sale and restart it later")
	fl.BoolVar(&cfg.Keep, "keep", false, "keep the temporary data directories and logs")
	fl.BoolVar(&plain, "plain", false, "print plain periodic lines even on a terminal")
	fl.StringVar(&cfg.Binary, "flashd-binary", "", "flashd binary for the child processes (default: this one)")
	return cmd
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
