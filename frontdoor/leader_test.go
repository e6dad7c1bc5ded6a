package frontdoor

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// storeNode is a gRPC Store server on loopback that either leads (grants
// every claim) or answers NOT_LEADER pointing at the leader.
type storeNode struct {
	pb.UnimplementedStoreServer
	addr     string
	leaderAt func() string // "" while this node leads

	mu   sync.Mutex
	seen [][]string // request IDs of each batch received
}

func (n *storeNode) ClaimBatch(_ context.Context, req *pb.ClaimBatchRequest) (*pb.ClaimBatchResponse, error) {
	ids := make([]string, len(req.GetClaims()))
	for i, c := range req.GetClaims() {
		ids[i] = c.GetRequestId()
	}
	n.mu.Lock()
	n.seen = append(n.seen, ids)
	n.mu.Unlock()
	if leader := n.leaderAt(); leader != "" {
		st, _ := status.New(codes.Unavailable, "not leader").WithDetails(&errdetails.ErrorInfo{
			Reason: "NOT_LEADER", Domain: "flashd", Metadata: map[string]string{"leader_addr": leader},
		})
		return nil, st.Err()
	}
	out := &pb.ClaimBatchResponse{Index: 7}
	for i, c := range req.GetClaims() {
		out.Outcomes = append(out.Outcomes, &pb.ClaimOutcome{Claim: &pb.Claim{
			Id: uint64(i + 1), UserId: c.GetUserId(), RequestId: c.GetRequestId(), Quantity: c.GetQuantity(),
			State: pb.ClaimState_CLAIM_STATE_RESERVED, Deadline: timestamppb.New(time.Now().Add(time.Minute)),
		}})
	}
	return out, nil
}

func (n *storeNode) Watch(_ *pb.WatchRequest, stream pb.Store_WatchServer) error {
	<-stream.Context().Done()
	return nil
}

func (n *storeNode) AnnounceFrontDoor(context.Context, *pb.AnnounceFrontDoorRequest) (*pb.AnnounceFrontDoorResponse, error) {
	return &pb.AnnounceFrontDoorResponse{Config: &pb.FrontDoorConfig{}, Ttl: durationpb.New(3 * time.Second)}, nil
}

func serveStoreNode(t *testing.T, n *storeNode) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = lis.Addr().String()
	srv := grpc.NewServer()
	pb.RegisterStoreServer(srv, n)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
}

// When the node a batch goes to is no longer the leader, the batch goes to
// the new leader with the same request IDs: the store's idempotency records
// then make sure nothing is claimed twice.
func TestBatchFollowsLeaderWithSameRequestIDs(t *testing.T) {
	leader := &storeNode{leaderAt: func() string { return "" }}
	serveStoreNode(t, leader)
	old := &storeNode{leaderAt: func() string { return leader.addr }}
	serveStoreNode(t, old)

	sc, err := client.NewStore([]string{old.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	d, _ := newTestDoor(t, NewStoreClient(sc), nil)
	openCampaign(d, 0, 0, 1)
	var wg sync.WaitGroup
	for _, u := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(userCtx(u), 5*time.Second)
			defer cancel()
			res, err := d.Claim(ctx, claimReq("req-"+u))
			if err != nil || res.GetRequestId() != "req-"+u {
				t.Errorf("claim of %s: %v %v", u, res, err)
			}
		}()
	}
	wg.Wait()
	sent := map[string]bool{}
	for _, b := range old.seen {
		for _, id := range b {
			sent[id] = true
		}
	}
	resent := map[string]bool{}
	for _, b := range leader.seen {
		for _, id := range b {
			resent[id] = true
		}
	}
	// The first batch went to the old leader; once redirected, the client
	// sends later batches to the new one directly.
	if len(sent) == 0 || len(resent) != 3 {
		t.Fatalf("old leader saw %v, new leader %v: want all three at the new leader", sent, resent)
	}
	for id := range sent {
		if !resent[id] {
			t.Fatalf("request %s not re-sent with its ID (new leader saw %v)", id, resent)
		}
	}
}

// The watch loop fills the catalog and the configuration, marks the door
// ready, and follows stock changes.
func TestWatchLoopKeepsCatalog(t *testing.T) {
	store := newFakeStore()
	d, _ := newTestDoor(t, store, nil)
	store.events <- &pb.WatchEvent{Index: 3, FrontDoorConfig: &pb.FrontDoorConfig{Version: 2, PerUserRate: 5}}
	store.events <- &pb.WatchEvent{Index: 3, Campaign: &pb.Campaign{Id: "c", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, State: pb.CampaignState_CAMPAIGN_STATE_OPEN}}
	store.events <- &pb.WatchEvent{Index: 3, Item: &pb.Item{CampaignId: "c", Id: "i", Total: 10, Available: 10, PerUserLimit: 1}}
	d.Start()
	select {
	case <-d.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("door not ready")
	}
	if got := d.funnel.Load().cfg.PerUserRate; got != 5 {
		t.Fatalf("per-user rate %v from the watch stream", got)
	}
	it := d.catalog.item("c", "i")
	if it == nil || it.soldOut.Load() || it.remainingPercent() != 100 {
		t.Fatalf("item %+v", it)
	}
	store.events <- &pb.WatchEvent{Index: 9, Item: &pb.Item{CampaignId: "c", Id: "i", Total: 10, Available: 0, Reserved: 10, PerUserLimit: 1}}
	waitFor(t, func() bool { return it.soldOut.Load() })
	// The heartbeat ran too: this door counts itself alone.
	waitFor(t, func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.liveDoors == 1 })
}
