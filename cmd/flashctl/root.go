package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
)

const (
	defaultEndpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
	endpointsEnv     = "FLASHCTL_ENDPOINTS"
	defaultTimeout   = 10 * time.Second
	// attemptsPerTimeout: each attempt may use this share of --timeout, so a
	// node that swallows requests leaves time to try the others.
	attemptsPerTimeout = 3

	outputTable = "table"
	outputJSON  = "json"

	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad flags or arguments
)

// globals are the root's flags and where results go, shared by every
// command.
type globals struct {
	endpoints []string
	output    string
	timeout   time.Duration
	stdout    io.Writer

	// calledCluster is set once a command has checked its flags and
	// arguments and calls the cluster: an error before that is a usage error.
	calledCluster bool
}

// run executes flashctl with args and returns the exit code. Results go to
// stdout; errors go to stderr as one line, after which bad usage also gets
// the command's usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	g := &globals{stdout: stdout}
	root := newRootCmd(g, getenv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", errorPrefix(cmd), err)
	if g.calledCluster {
		return exitFailure
	}
	fmt.Fprint(stderr, "\n"+cmd.UsageString())
	return exitUsage
}

// errorPrefix names the command in an error line: "flashctl: campaign create".
func errorPrefix(cmd *cobra.Command) string {
	root, sub, found := strings.Cut(cmd.CommandPath(), " ")
	if !found {
		return root
	}
	return root + ": " + sub
}

func newRootCmd(g *globals, getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:   "flashctl",
		Short: "flashctl administers a flashd store cluster",
		Long: `flashctl administers a flashd store cluster: membership, campaigns,
items, stock and claims. It talks gRPC to the store nodes, finds the leader
itself and retries on another node when one is down, within --timeout.`,
		SilenceUsage:      true, // run prints usage, to stderr, for bad usage only
		SilenceErrors:     true,
		PersistentPreRunE: func(*cobra.Command, []string) error { return g.validate() },
	}
	endpoints := defaultEndpoints
	if v := getenv(endpointsEnv); v != "" {
		endpoints = v
	}
	pf := root.PersistentFlags()
	pf.StringSliceVar(&g.endpoints, "endpoints", splitList(endpoints),
		"gRPC addresses of store nodes, comma-separated (env "+endpointsEnv+")")
	pf.StringVarP(&g.output, "output", "o", outputTable, "output format: table or json")
	pf.DurationVar(&g.timeout, "timeout", defaultTimeout, "deadline of the whole command, retries included")
	root.AddCommand(
		newClusterCmd(g),
		newCampaignCmd(g),
		newItemCmd(g),
		newStockCmd(g),
		newClaimCmd(g),
		newClaimsCmd(g),
		newSettleCmd(g),
		newReleaseCmd(g),
		newCardsCmd(g),
		newDegradeCmd(g),
		newRateLimitCmd(g),
		newTokenCmd(g),
		newBenchCmd(g, getenv),
		newChaosCmd(g, getenv),
	)
	return root
}

func (g *globals) validate() error {
	g.endpoints = splitList(strings.Join(g.endpoints, ","))
	switch {
	case len(g.endpoints) == 0:
		return fmt.Errorf("--endpoints: no store address given")
	case g.output != outputTable && g.output != outputJSON:
		return fmt.Errorf("--output %q: want %s or %s", g.output, outputTable, outputJSON)
	case g.timeout <= 0:
		return fmt.Errorf("--timeout %v: must be positive", g.timeout)
	}
	return nil
}

// call connects to the cluster and runs fn with a context bounded by
// --timeout.
func (g *globals) call(cmd *cobra.Command, fn func(context.Context, *client.Store) error) error {
	g.calledCluster = true
	st, err := client.NewStore(g.endpoints, client.WithAttemptTimeout(g.timeout/attemptsPerTimeout))
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	defer cancel()
	return fn(ctx, st)
}

// splitList splits a comma-separated value, dropping empty parts.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
