package rpc

import (
	"context"
	"testing"
	"time"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// TestClusterStatusThroughARemovedNode: a node removed from the cluster
// keeps serving and knows no leader, while the members it lists report
// theirs. Its cluster status names the leader the members report, marks
// that member, and lists the leader's front doors.
func TestClusterStatusThroughARemovedNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-node cluster")
	}
	c := startLoopbackCluster(t, 4, false)
	l := c.leader(t)
	removed := (l + 1) % len(c.nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := pb.NewAdminClient(c.conns[l])
	if _, err := admin.Remove(ctx, &pb.RemoveRequest{Id: c.nodes[removed].ID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.NewStoreClient(c.conns[l]).AnnounceFrontDoor(ctx, &pb.AnnounceFrontDoorRequest{
		FrontDoor: &pb.FrontDoorPresence{Id: "f1", Region: "east", Weight: 1},
	}); err != nil {
		t.Fatal(err)
	}
	// No longer sent heartbeats, it forgets the leader at its election
	// timeout (and, not in its own configuration, starts no election).
	waitFor(t, ctx, "the removed node to forget the leader", func() bool { return c.nodes[removed].Status().LeaderID == "" })
	var st *pb.ClusterStatusResponse
	waitFor(t, ctx, "the removed node to learn it was removed", func() bool {
		var err error
		st, err = pb.NewAdminClient(c.conns[removed]).ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		return err == nil && len(st.GetMembers()) == len(c.nodes)-1
	})
	leaderID := c.nodes[l].ID()
	if st.GetLeaderId() != leaderID || st.GetLeaderGrpcAddr() != c.servers[l].GRPCAddr() {
		t.Errorf("removed node names leader %q at %q, want %s at %s", st.GetLeaderId(), st.GetLeaderGrpcAddr(), leaderID, c.servers[l].GRPCAddr())
	}
	for _, m := range st.GetMembers() {
		if m.GetLeader() != (m.GetId() == leaderID) || (m.GetId() == leaderID && m.GetStatus().GetState() != stateLeader) {
			t.Errorf("member %s: leader mark %v, state %q; the leader is %s", m.GetId(), m.GetLeader(), m.GetStatus().GetState(), leaderID)
		}
	}
	if doors := st.GetFrontDoors(); len(doors) != 1 || doors[0].GetId() != "f1" {
		t.Errorf("front doors through the removed node: %v, want the leader's f1", doors)
	}
}

func TestReportedLeader(t *testing.T) {
	member := func(id, state string, term uint64) *pb.Member {
		return &pb.Member{Id: id, Status: &pb.NodeStatusResponse{State: state, Term: term}}
	}
	for _, tc := range []struct {
		name    string
		members []*pb.Member
		want    string
	}{
		{"one leader", []*pb.Member{member("a", "Follower", 3), member("b", "Leader", 3), {Id: "c"}}, "b"},
		{"a deposed leader", []*pb.Member{member("a", "Leader", 2), member("b", "Leader", 3), member("c", "Follower", 3)}, "b"},
		{"an election", []*pb.Member{member("a", "Leader", 2), member("b", "Candidate", 3)}, ""},
		{"no answer", []*pb.Member{{Id: "a"}, {Id: "b"}}, ""},
	} {
		got := reportedLeader(tc.members)
		if got.GetId() != tc.want {
			t.Errorf("%s: leader %q, want %q", tc.name, got.GetId(), tc.want)
		}
	}
}
