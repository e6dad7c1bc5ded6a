package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/raftnode"
	"github.com/flashd/flashd/rpc"
	"github.com/flashd/flashd/rpc/endpoint"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

const joinTimeout = 60 * time.Second

type storeFlags struct {
	id, region, dataDir           string
	raftAddr, grpcAddr, httpAddr  string
	bootstrap                     bool
	join                          string
	nonVoter                      bool
	checkInvariants               bool
	maxAppendEntries              int
	heartbeatTimeout, electionTTL time.Duration
	idempotencyRetention          time.Duration
	idempotencyMaxRecords         int
	limits                        endpoint.Limits
}

func newStoreCmd() *cobra.Command {
	f := storeFlags{limits: rpc.DefaultLimits()}
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Run a store node (a member of the Raft cluster)",
		Example: `  flashd store --id n1 --region east --data-dir /var/lib/flashd/n1 \
    --raft-addr 127.0.0.1:7101 --grpc-addr 127.0.0.1:7001 --http-addr 127.0.0.1:7201 --bootstrap
  flashd store --id n2 --region west --data-dir /var/lib/flashd/n2 \
    --raft-addr 127.0.0.1:7102 --grpc-addr 127.0.0.1:7002 --http-addr 127.0.0.1:7202 --join 127.0.0.1:7001`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStore(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "node ID, unique in the cluster (required)")
	fl.StringVar(&f.region, "region", "default", "region label")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for the raft log, stable store and snapshots (required)")
	fl.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7101", "raft transport address (bind and advertised)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7001", "gRPC address for the Store and Admin services")
	fl.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:7201", "HTTP address for /metrics (empty: none)")
	fl.BoolVar(&f.bootstrap, "bootstrap", false, "bootstrap a new cluster with this node as its first voter")
	fl.StringVar(&f.join, "join", "", "join the cluster through the gRPC address of any member (comma-separated list allowed)")
	fl.BoolVar(&f.nonVoter, "non-voter", false, "join as a non-voter (serves stale reads, does not vote)")
	fl.BoolVar(&f.checkInvariants, "check-invariants", false, "check every state-machine invariant after every command (slow; tests and debugging)")
	fl.IntVar(&f.maxAppendEntries, "max-append-entries", 0, "log entries per append and fsync (0: default 256)")
	fl.DurationVar(&f.heartbeatTimeout, "heartbeat-timeout", 0, "raft heartbeat timeout (0: default 1s)")
	fl.DurationVar(&f.electionTTL, "election-timeout", 0, "raft election timeout (0: default 1s)")
	fl.DurationVar(&f.idempotencyRetention, "idempotency-retention", 0, "how long request IDs are remembered, by command time (0: default 10m)")
	fl.IntVar(&f.idempotencyMaxRecords, "idempotency-max-records", 0, "how many request IDs are remembered at most (0: default 1,000,000)")
	addLimitFlags(fl, &f.limits)
	fl.DurationVar(&f.limits.CallTimeout, "call-timeout", f.limits.CallTimeout, "deadline of a call whose caller gave none (streams excepted)")
	cmd.MarkFlagRequired("id")
	cmd.MarkFlagRequired("data-dir")
	cmd.MarkFlagsMutuallyExclusive("bootstrap", "join")
	return cmd
}

func runStore(cmd *cobra.Command, f storeFlags) error {
	log := newLogger(cmd).With("node", f.id, "region", f.region)
	node, err := raftnode.Open(raftnode.Config{
		ID: f.id, Region: f.region, DataDir: f.dataDir,
		RaftAddr: f.raftAddr, GRPCAddr: f.grpcAddr, HTTPAddr: f.httpAddr,
		Bootstrap: f.bootstrap, Logger: log,
		FSM: fsm.Config{
			CheckInvariants:       f.checkInvariants,
			IdempotencyRetention:  f.idempotencyRetention,
			IdempotencyMaxRecords: f.idempotencyMaxRecords,
		},
		MaxAppendEntries: f.maxAppendEntries,
		HeartbeatTimeout: f.heartbeatTimeout, ElectionTimeout: f.electionTTL,
	})
	if err != nil {
		return err
	}
	defer node.Close()
	srv, err := rpc.ServeStore(node, f.grpcAddr, f.httpAddr, f.limits, log)
	if err != nil {
		return err
	}
	defer srv.Stop()
	logLimits(log, srv.Endpoints, f.limits.ConnsMax)
	if f.join != "" {
		if err := joinCluster(cmd.Context(), node, f); err != nil {
			return err
		}
	}
	select {
	case <-cmd.Context().Done():
		log.Info("shutting down")
		return nil
	case err := <-srv.Done():
		return fmt.Errorf("server stopped: %w", err)
	}
}

// joinCluster asks the cluster to add this node, unless it is already a
// member (a restart keeps its raft state and needs no join).
func joinCluster(ctx context.Context, node *raftnode.Node, f storeFlags) error {
	if members, err := node.Members(); err == nil {
		for _, m := range members {
			if m.ID == f.id {
				return nil
			}
		}
	}
	c, err := client.NewStore(splitList(f.join))
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	for {
		_, err := c.Join(ctx, &pb.JoinRequest{
			Id: f.id, RaftAddr: f.raftAddr, GrpcAddr: f.grpcAddr, HttpAddr: f.httpAddr,
			Region: f.region, NonVoter: f.nonVoter,
		})
		if err == nil {
			slog.Info("joined cluster", "via", f.join)
			return nil
		}
		if !client.IsRetryable(err) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("join through %s: %w", f.join, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join through %s: %w", f.join, err)
		case <-time.After(time.Second):
		}
	}
}
