package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/cmd/flashd/settler"
)

type settlerFlags struct {
	store    string
	httpAddr string
	cfg      settler.Config
}

func newSettlerCmd() *cobra.Command {
	var f settlerFlags
	cmd := &cobra.Command{
		Use:   "settler",
		Short: "Run a settlement worker: the --campaign campaigns' reserved claims become orders, then settled or released",
		Long: `Run a settlement worker for the campaigns named by --campaign (one or more,
required): it settles their claims and no other campaign's. It leases their
open claims from the store's settlement feed (in claim ID order, from a cursor
kept in the store for its --group; workers of other campaigns may share the
group, each leasing only its own campaigns' claims). For a reserved claim it
first marks the claim as ordering in the store, then POSTs it as a JSON order
to --order-url with the claim ID as the Idempotency-Key header, and then
settles the claim on a 2xx answer (also after its reservation deadline: a
marked claim is not released at its deadline), retries 5xx, 408, 429, timeouts
and connection errors with backoff, and releases the claim (its stock goes back
on sale) on any other 4xx. A marked claim whose deadline passed without a
settle comes back from the feed to be compensated: the worker marks it
cancelling (no settle is taken after that), POSTs the same body with the same
Idempotency-Key to --cancel-url (a 404 means there was no order), and releases
it. Several workers may run at once: a leased claim is one worker's until its
lease ends. A replacement worker resumes from the group's cursor, and finishes
what a dead one left marked. Stops on SIGINT or SIGTERM.`,
		Example: `  flashd settler --store 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --campaign spring \
    --order-url http://orders.internal/v1/orders --concurrency 16
  flashd settler --store 127.0.0.1:7001 --campaign spring,autumn --order-url http://orders.internal/v1/orders`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSettler(cmd, f) },
	}
	host, _ := os.Hostname()
	fl := cmd.Flags()
	fl.StringVar(&f.store, "store", "", "gRPC addresses of store nodes, comma-separated (required)")
	fl.StringSliceVar(&f.cfg.Campaigns, "campaign", nil, "the campaigns whose claims this worker settles, comma-separated or repeated, 1 to 64 (required)")
	fl.StringVar(&f.cfg.OrderURL, "order-url", "", "the order service's URL (required)")
	fl.StringVar(&f.cfg.CancelURL, "cancel-url", "", "where an order accepted for an expired reservation is cancelled (default: --order-url + /cancel)")
	fl.StringVar(&f.httpAddr, "http-addr", "", "HTTP address for /metrics (flashd_settler_*; empty: none)")
	fl.IntVar(&f.cfg.Concurrency, "concurrency", settler.DefaultConcurrency, "claims handled at once")
	fl.StringVar(&f.cfg.Group, "group", settler.DefaultGroup, "worker group: workers sharing one cursor")
	fl.StringVar(&f.cfg.Worker, "worker", fmt.Sprintf("%s-%d-%d", host, os.Getpid(), time.Now().UnixNano()%1e6), "this worker's ID in the group")
	fl.DurationVar(&f.cfg.Lease, "lease", settler.DefaultLease, "how long a leased claim is this worker's")
	fl.DurationVar(&f.cfg.OrderTimeout, "order-timeout", 0, "deadline of one order call (default: 5s, at most a fifth of --lease)")
	cmd.MarkFlagRequired("store")
	cmd.MarkFlagRequired("campaign")
	cmd.MarkFlagRequired("order-url")
	return cmd
}

func runSettler(cmd *cobra.Command, f settlerFlags) error {
	f.cfg.Logger = newLogger(cmd).With("worker", f.cfg.Worker)
	st, err := client.NewStore(splitList(f.store))
	if err != nil {
		return err
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	f.cfg.Metrics = reg
	w, err := settler.New(st, f.cfg)
	if err != nil {
		return err
	}
	if f.httpAddr != "" {
		stop, err := serveMetrics(f.httpAddr, reg)
		if err != nil {
			return err
		}
		defer stop()
	}
	f.cfg.Logger.Info("settler running", "campaigns", strings.Join(f.cfg.Campaigns, ","), "group", f.cfg.Group, "order_url", f.cfg.OrderURL)
	err = w.Run(cmd.Context())
	s := w.Stats()
	f.cfg.Logger.Info("settler stopped", "settled", s.Settled, "released", s.Released, "retries", s.Retries,
		"dropped", s.Dropped, "conflicts", s.Conflicts, "expired", s.Expired, "compensated", s.Compensated,
		"cancelled", s.Cancelled, "no_order", s.NoOrder, "cancel_failed", s.CancelFailed)
	return err
}

// serveMetrics serves reg on http://addr/metrics until stop is called.
func serveMetrics(addr string, reg *prometheus.Registry) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen http on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}
