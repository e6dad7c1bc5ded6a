package rpc

import (
	"context"
	"fmt"
	"strings"
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
	for {
		_, err := pb.NewAdminClient(c.conns[c.leader(t)]).Remove(ctx, &pb.RemoveRequest{Id: c.nodes[removed].ID()})
		if err == nil {
			break
		}
		if reasonOf(err) != "NOT_LEADER" || ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	// No longer sent heartbeats, it forgets the leader at its election
	// timeout (and, not in its own configuration, starts no election).
	waitFor(t, ctx, "the removed node to forget the leader", func() bool { return c.nodes[removed].Status().LeaderID == "" })
	// Leadership may move on a loaded machine (and the front doors are the
	// leader's soft state): each round announces the door to whoever leads
	// now, and asks the removed node until it names that leader.
	var problems []string
	deadline := time.Now().Add(20 * time.Second) // within ctx's
	for round := func() bool {
		l := c.leader(t)
		if _, err := pb.NewStoreClient(c.conns[l]).AnnounceFrontDoor(ctx, &pb.AnnounceFrontDoorRequest{
			FrontDoor: &pb.FrontDoorPresence{Id: "f1", Region: "east", Weight: 1},
		}); err != nil {
			problems = []string{err.Error()}
			return false
		}
		st, err := pb.NewAdminClient(c.conns[removed]).ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err != nil || len(st.GetMembers()) != len(c.nodes)-1 {
			problems = []string{fmt.Sprintf("status %v, %d members", err, len(st.GetMembers()))}
			return false
		}
		leaderID := c.nodes[l].ID()
		problems = nil
		if st.GetLeaderId() != leaderID || st.GetLeaderGrpcAddr() != c.servers[l].GRPCAddr() {
			problems = append(problems, fmt.Sprintf("removed node names leader %q at %q, want %s at %s", st.GetLeaderId(), st.GetLeaderGrpcAddr(), leaderID, c.servers[l].GRPCAddr()))
		}
		for _, m := range st.GetMembers() {
			if m.GetLeader() != (m.GetId() == leaderID) || (m.GetId() == leaderID && m.GetStatus().GetState() != stateLeader) {
				problems = append(problems, fmt.Sprintf("member %s: leader mark %v, state %q; the leader is %s", m.GetId(), m.GetLeader(), m.GetStatus().GetState(), leaderID))
			}
		}
		if doors := st.GetFrontDoors(); len(doors) != 1 || doors[0].GetId() != "f1" {
			problems = append(problems, fmt.Sprintf("front doors through the removed node: %v, want the leader's f1", doors))
		}
		return len(problems) == 0
	}; !round(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(strings.Join(problems, "; "))
		}
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
