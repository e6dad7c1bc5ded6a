package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// digestShown is how much of a state digest the status table shows.
const digestShown = 12

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change the cluster's membership and leadership",
	}
	cmd.AddCommand(
		newClusterStatusCmd(g),
		newClusterJoinCmd(g),
		newClusterRemoveCmd(g),
		newClusterTransferLeaderCmd(g),
		newClusterSnapshotCmd(g),
	)
	return cmd
}

func newClusterStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every member's state, the leader, and the live front doors",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runClusterStatus(cmd, g) },
	}
}

func runClusterStatus(cmd *cobra.Command, g *globals) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		status, err := st.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err != nil {
			return err
		}
		return g.render(status, func(w io.Writer) { clusterStatusTable(w, status, time.Now()) })
	})
}

func clusterStatusTable(w io.Writer, status *pb.ClusterStatusResponse, now time.Time) {
	if status.GetLeaderId() == "" {
		row(w, "leader:", "none known")
	} else {
		row(w, "leader:", fmt.Sprintf("%s (region %s, %s)", status.GetLeaderId(), dash(status.GetLeaderRegion()), dash(status.GetLeaderGrpcAddr())))
	}
	row(w)
	row(w, "ID", "REGION", "VOTER", "LEADER", "STATE", "TERM", "COMMIT", "APPLIED", "LAST CONTACT", "DIGEST", "CLAIMS", "GRPC", "ERROR")
	for _, m := range status.GetMembers() {
		voter := "non-voter"
		if m.GetVoter() {
			voter = "voter"
		}
		leader := ""
		if m.GetLeader() {
			leader = "*"
		}
		s := m.GetStatus()
		if s == nil {
			row(w, m.GetId(), dash(m.GetRegion()), voter, leader, "-", "-", "-", "-", "-", "-", "-", dash(m.GetGrpcAddr()), dash(m.GetError()))
			continue
		}
		digest := s.GetDigest()
		if len(digest) > digestShown {
			digest = digest[:digestShown]
		}
		row(w, m.GetId(), dash(m.GetRegion()), voter, leader, dash(s.GetState()), s.GetTerm(),
			s.GetCommitIndex(), s.GetAppliedIndex(), formatAge(s.GetLastContact(), now), dash(digest),
			s.GetClaims(), dash(m.GetGrpcAddr()), dash(m.GetError()))
	}
	if doors := status.GetFrontDoors(); len(doors) > 0 {
		row(w)
		row(w, "FRONT DOOR", "REGION", "GRPC", "WEIGHT", "DEGRADE LEVEL", "ADMITTED/S", "LAST SEEN")
		for _, d := range doors {
			row(w, d.GetId(), dash(d.GetRegion()), dash(d.GetGrpcAddr()), d.GetWeight(), d.GetDegradeLevel(),
				fmt.Sprintf("%.1f", d.GetAdmittedPerSecond()), formatAge(d.GetLastSeen(), now))
		}
	}
}

func newClusterJoinCmd(g *globals) *cobra.Command {
	req := &pb.JoinRequest{}
	cmd := &cobra.Command{
		Use:   "join",
		Short: "Add a node to the cluster (start it first, without --bootstrap)",
		Example: `  flashctl cluster join --id n4 --region west --raft-addr 10.0.2.4:7101 --grpc-addr 10.0.2.4:7001
  flashctl cluster join --id r1 --region north --raft-addr 10.0.3.1:7101 --grpc-addr 10.0.3.1:7001 --non-voter`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runClusterJoin(cmd, g, req) },
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Id, "id", "", "node ID (required)")
	fl.StringVar(&req.RaftAddr, "raft-addr", "", "the node's raft address (required)")
	fl.StringVar(&req.GrpcAddr, "grpc-addr", "", "the node's gRPC address (required)")
	fl.StringVar(&req.HttpAddr, "http-addr", "", "the node's HTTP (metrics) address")
	fl.StringVar(&req.Region, "region", "", "the node's region (required)")
	fl.BoolVar(&req.NonVoter, "non-voter", false, "join as a non-voter: replicates and serves stale reads, does not vote")
	requireFlags(cmd, "id", "raft-addr", "grpc-addr", "region")
	return cmd
}

func runClusterJoin(cmd *cobra.Command, g *globals, req *pb.JoinRequest) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		if _, err := st.Join(ctx, req); err != nil {
			return err
		}
		role := "voter"
		if req.GetNonVoter() {
			role = "non-voter"
		}
		return g.render(jsonObject{"joined": req}, func(w io.Writer) {
			row(w, fmt.Sprintf("node %s joined as a %s (region %s, raft %s, grpc %s)",
				req.GetId(), role, req.GetRegion(), req.GetRaftAddr(), req.GetGrpcAddr()))
		})
	})
}

func newClusterRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runClusterRemove(cmd, g, args[0]) },
	}
}

func runClusterRemove(cmd *cobra.Command, g *globals, id string) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		if _, err := st.Remove(ctx, &pb.RemoveRequest{Id: id}); err != nil {
			return err
		}
		return g.render(jsonObject{"removed": id}, func(w io.Writer) {
			row(w, fmt.Sprintf("node %s removed", id))
		})
	})
}

func newClusterTransferLeaderCmd(g *globals) *cobra.Command {
	req := &pb.TransferLeadershipRequest{}
	cmd := &cobra.Command{
		Use:   "transfer-leader",
		Short: "Hand leadership to a node, to a voter in a region, or to any voter",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runClusterTransferLeader(cmd, g, req) },
	}
	fl := cmd.Flags()
	fl.StringVar(&req.ToId, "to", "", "ID of the node to lead")
	fl.StringVar(&req.ToRegion, "region", "", "any voter in this region may lead")
	cmd.MarkFlagsMutuallyExclusive("to", "region")
	return cmd
}

func runClusterTransferLeader(cmd *cobra.Command, g *globals, req *pb.TransferLeadershipRequest) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.TransferLeadership(ctx, req)
		if err != nil {
			return err
		}
		return g.render(resp, func(w io.Writer) {
			row(w, fmt.Sprintf("leader is now %s", dash(resp.GetLeaderId())))
		})
	})
}

func newClusterSnapshotCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshot",
		Short: "Make the leader take a snapshot now",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runClusterSnapshot(cmd, g) },
	}
}

func runClusterSnapshot(cmd *cobra.Command, g *globals) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.Snapshot(ctx, &pb.SnapshotRequest{})
		if err != nil {
			return err
		}
		return g.render(resp, func(w io.Writer) {
			row(w, fmt.Sprintf("snapshot taken at log index %d", resp.GetIndex()))
		})
	})
}
