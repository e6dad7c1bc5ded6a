package rpc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/raftnode"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// loopbackCluster is n store nodes in this process, talking raft over
// loopback TCP, with real bbolt files and real gRPC servers.
type loopbackCluster struct {
	nodes   []*raftnode.Node
	servers []*StoreNode
	conns   []*grpc.ClientConn
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startLoopbackCluster(tb testing.TB, n int, checkInvariants bool) *loopbackCluster {
	return startTunedCluster(tb, n, raftnode.Config{FSM: fsm.Config{CheckInvariants: checkInvariants}})
}

// startTunedCluster starts n nodes with the raft tuning fields of tune.
func startTunedCluster(tb testing.TB, n int, tune raftnode.Config) *loopbackCluster {
	tb.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := &loopbackCluster{}
	tb.Cleanup(c.stop)
	for i := 0; i < n; i++ {
		grpcAddr := freeAddr(tb)
		node, err := raftnode.Open(raftnode.Config{
			ID: fmt.Sprintf("n%d", i+1), Region: fmt.Sprintf("region-%d", i+1), DataDir: tb.TempDir(),
			RaftAddr: freeAddr(tb), GRPCAddr: grpcAddr, Bootstrap: i == 0, Logger: quiet, RaftLog: io.Discard,
			FSM: tune.FSM, MaxAppendEntries: tune.MaxAppendEntries, NoBatchApplyCh: tune.NoBatchApplyCh,
			// The defaults, not 500ms: with two copies of the package
			// under -race at load 25, 500ms timers lost leaders mid-test
			// (tests talk to the leader they found); it costs the tests
			// about half a second each to elect the first leader.
			HeartbeatTimeout: time.Second, ElectionTimeout: time.Second,
		})
		if err != nil {
			tb.Fatalf("open node %d: %v", i+1, err)
		}
		c.nodes = append(c.nodes, node)
		srv, err := ServeStore(node, grpcAddr, "", DefaultLimits(), quiet)
		if err != nil {
			tb.Fatalf("serve node %d: %v", i+1, err)
		}
		c.servers = append(c.servers, srv)
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			tb.Fatal(err)
		}
		c.conns = append(c.conns, conn)
	}
	c.joinAll(tb)
	return c
}

// joinAll joins every node but the first through whoever leads: on a
// loaded machine leadership may move while the cluster forms, and a join
// refused NOT_LEADER is asked again of the next leader (a join of a member
// already there changes nothing).
func (c *loopbackCluster) joinAll(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(tb, ctx, "first leader", func() bool { return c.nodes[0].IsLeader() })
	for i, node := range c.nodes[1:] {
		st := node.Status()
		for {
			l := c.leader(tb)
			if l == i+1 {
				break // a leader is a voter already
			}
			_, err := pb.NewAdminClient(c.conns[l]).Join(ctx, &pb.JoinRequest{
				Id: st.ID, RaftAddr: c.raftAddr(i + 1), GrpcAddr: c.servers[i+1].GRPCAddr(), Region: st.Region,
			})
			if err == nil {
				break
			}
			if r := reasonOf(err); r != "NOT_LEADER" && r != "LEADER_NOT_READY" || ctx.Err() != nil {
				tb.Fatalf("join %s: %v", st.ID, err)
			}
		}
	}
}

func (c *loopbackCluster) raftAddr(i int) string { return c.nodes[i].RaftAddr() }

func (c *loopbackCluster) addrs() []string {
	out := make([]string, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.GRPCAddr()
	}
	return out
}

func (c *loopbackCluster) stop() {
	for _, conn := range c.conns {
		conn.Close()
	}
	for _, s := range c.servers {
		s.Stop()
	}
	for _, n := range c.nodes {
		n.Close()
	}
}

// leader returns the index of the ready leader.
func (c *loopbackCluster) leader(tb testing.TB) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	found := -1
	waitFor(tb, ctx, "a ready leader", func() bool {
		for i, n := range c.nodes {
			if n.IsLeader() && n.LinearizableRead(ctx) == nil {
				found = i
				return true
			}
		}
		return false
	})
	return found
}

func waitFor(tb testing.TB, ctx context.Context, what string, ok func() bool) {
	tb.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			tb.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// openSale creates campaign "spring" with item "lantern" and opens it.
func openSale(tb testing.TB, admin pb.AdminClient, stock uint64, perUser uint32) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := admin.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: "spring", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "Spring",
		Start: timestamppb.New(time.Now().Add(-time.Minute)), PerUserLimit: perUser,
	}})
	if err == nil {
		_, err = admin.AddItem(ctx, &pb.AddItemRequest{CampaignId: "spring", ItemId: "lantern", Stock: stock})
	}
	if err == nil {
		_, err = admin.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: "spring", State: pb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()})
	}
	if err != nil {
		tb.Fatalf("open sale: %v", err)
	}
}

func TestLoopbackClusterServesAndHintsLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := startLoopbackCluster(t, 3, true)
	l := c.leader(t)
	openSale(t, pb.NewAdminClient(c.conns[l]), 10, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A write to a follower is refused with the leader's gRPC address,
	// once it has applied the leader's registration (openSale returns when
	// the leader has applied; a follower may lag, on a loaded machine long
	// enough to know the leader's ID but not yet its address).
	f := (l + 1) % 3
	waitFor(t, ctx, "the follower to catch up", func() bool {
		return c.nodes[f].FSM().AppliedIndex() >= c.nodes[l].FSM().AppliedIndex()
	})
	_, err := pb.NewStoreClient(c.conns[f]).ClaimBatch(ctx, claimBatch("u1", 1))
	info := errorInfo(t, err)
	if status.Code(err) != codes.Unavailable || info.Reason != "NOT_LEADER" || info.Metadata["leader_addr"] != c.servers[l].GRPCAddr() {
		t.Fatalf("follower write: %v %+v, want UNAVAILABLE NOT_LEADER naming %s", err, info, c.servers[l].GRPCAddr())
	}

	// Claims beyond the stock are refused per claim; the batch itself succeeds.
	store := pb.NewStoreClient(c.conns[l])
	res, err := store.ClaimBatch(ctx, claimBatch("u", 12))
	if err != nil {
		t.Fatal(err)
	}
	var granted, soldOut int
	for _, o := range res.Outcomes {
		switch o.Reason {
		case pb.Reason_REASON_UNSPECIFIED:
			granted++
		case pb.Reason_REASON_SOLD_OUT:
			soldOut++
		}
	}
	if granted != 10 || soldOut != 2 {
		t.Fatalf("granted %d, sold out %d; want 10 and 2", granted, soldOut)
	}

	// Stale reads on a follower say what index they reflect, and catch up.
	waitFor(t, ctx, "follower to apply the batch", func() bool {
		r, err := store.GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern"})
		fr, ferr := pb.NewStoreClient(c.conns[f]).GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern", Consistency: pb.Consistency_CONSISTENCY_STALE})
		return err == nil && ferr == nil && fr.Index >= res.Index && fr.Item.Available == 0 && r.Item.Reserved == 10
	})

	// Front doors announce themselves to the leader; any node's cluster
	// status lists them.
	_, err = store.AnnounceFrontDoor(ctx, &pb.AnnounceFrontDoorRequest{FrontDoor: &pb.FrontDoorPresence{Id: "f1", Region: "east", Weight: 1}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := pb.NewAdminClient(c.conns[f]).ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil || len(st.FrontDoors) != 1 || st.FrontDoors[0].Id != "f1" {
		t.Fatalf("follower's cluster status front doors = %v (%v), want f1", st.GetFrontDoors(), err)
	}

	// A bad request changes nothing and says why.
	_, err = store.ClaimBatch(ctx, &pb.ClaimBatchRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty batch: %v, want INVALID_ARGUMENT", err)
	}
}

func claimBatch(userPrefix string, n int) *pb.ClaimBatchRequest {
	req := &pb.ClaimBatchRequest{}
	for i := 0; i < n; i++ {
		user := fmt.Sprintf("%s-%d", userPrefix, i)
		req.Claims = append(req.Claims, &pb.ClaimRequest{RequestId: "r-" + user, CampaignId: "spring", ItemId: "lantern", UserId: user, Quantity: 1})
	}
	return req
}

func errorInfo(t *testing.T, err error) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return &errdetails.ErrorInfo{}
}
