package settler

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/fsm"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// acceptAll is an order service that accepts every order and records the
// keys it was asked about.
type acceptAll struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (o *acceptAll) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.keys[r.Header.Get("Idempotency-Key")] = true
	o.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// TestWorkerSettlesOnlyItsCampaigns: with claims of two campaigns
// interleaved in the feed, a worker of one campaign settles all of that
// campaign's claims and never marks, orders or settles one of the other's,
// which stay reserved for their own workers.
func TestWorkerSettlesOnlyItsCampaigns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	const perCampaign = 20
	addrs, nodes := cluster(t, 3)
	st := storeClient(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	for _, id := range []string{"spring", "autumn"} {
		_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
			Id: id, Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Start: timestamppb.New(time.Now().Add(-time.Minute)),
		}})
		if err == nil {
			_, err = st.AddItem(ctx, &pb.AddItemRequest{CampaignId: id, ItemId: "lantern", Stock: perCampaign})
		}
		if err == nil {
			_, err = st.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: id, State: pb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	req := &pb.ClaimBatchRequest{}
	for i := range 2 * perCampaign {
		campaign := []string{"autumn", "spring"}[i%2] // claim 1 is autumn's, 2 spring's, ...
		req.Claims = append(req.Claims, &pb.ClaimRequest{CampaignId: campaign, ItemId: "lantern", UserId: fmt.Sprint("user-", i), Quantity: 1})
	}
	if _, err := st.ClaimBatch(ctx, req); err != nil {
		t.Fatal(err)
	}

	orders := &acceptAll{keys: map[string]bool{}}
	orderAddr := freeAddr(t)
	defer serveHandler(t, orderAddr, orders)()
	// One claim at a time, in claim ID order: every autumn claim comes
	// before the last spring claim, so by the time that one is settled the
	// worker has been handed every autumn claim it would ever take.
	w, err := New(st, Config{
		Worker: "spring-1", Campaigns: []string{"spring"}, OrderURL: "http://" + orderAddr + "/orders", Concurrency: 1,
		Lease: 2 * time.Second, OrderTimeout: 300 * time.Millisecond, PollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(wctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	item := func(campaign string) *pb.Item {
		t.Helper()
		resp, err := st.GetItem(ctx, &pb.GetItemRequest{CampaignId: campaign, ItemId: "lantern"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetItem()
	}
	for item("spring").GetSold() != perCampaign {
		if ctx.Err() != nil {
			t.Fatalf("spring's claims not settled: %v", item("spring"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	<-done
	caughtUp(ctx, t, nodes, nodes[0])

	if it := item("autumn"); it.GetReserved() != perCampaign || it.GetSold() != 0 {
		t.Errorf("autumn's item %v: want every claim still reserved", it)
	}
	for id := uint64(1); id <= 2*perCampaign; id++ {
		claim, ok := nodes[0].FSM().Claim(id)
		if !ok {
			t.Fatalf("claim %d missing", id)
		}
		orders.mu.Lock()
		asked := orders.keys[strconv.FormatUint(id, 10)]
		orders.mu.Unlock()
		want := fsm.ClaimSettled
		if claim.CampaignID == "autumn" {
			want = fsm.ClaimReserved
		}
		if claim.State != want || asked != (claim.CampaignID == "spring") {
			t.Errorf("claim %d of %s is %v, order asked %v; want %v", id, claim.CampaignID, claim.State, asked, want)
		}
	}
	if s := w.Stats(); s.Settled != perCampaign || s.Conflicts != 0 {
		t.Errorf("worker stats %+v: want %d settled", s, perCampaign)
	}
}

// unfilteredStore is a store that predates the campaign filter: its feed
// hands out a claim of another campaign, whatever the lease asks.
type unfilteredStore struct {
	Store
	mu     sync.Mutex
	leases int
	marks  int
}

func (s *unfilteredStore) LeaseClaims(context.Context, *pb.LeaseClaimsRequest) (*pb.LeaseClaimsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases++
	return &pb.LeaseClaimsResponse{Claims: []*pb.Claim{{Id: 1, CampaignId: "autumn", State: pb.ClaimState_CLAIM_STATE_RESERVED}}}, nil
}

func (s *unfilteredStore) MarkOrdering(context.Context, *pb.MarkOrderingRequest) (*pb.MarkOrderingResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marks++
	return &pb.MarkOrderingResponse{}, nil
}

// TestWorkerLeavesOtherCampaignsToTheFeed: a claim of a campaign the worker
// does not serve, handed out by a store without the campaign filter, is
// neither marked nor ordered.
func TestWorkerLeavesOtherCampaignsToTheFeed(t *testing.T) {
	st := &unfilteredStore{}
	w, err := New(st, Config{Worker: "w", Campaigns: []string{"spring"}, OrderURL: "http://127.0.0.1:1/orders", PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	for {
		st.mu.Lock()
		leases := st.leases
		st.mu.Unlock()
		if leases >= 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if st.marks != 0 || w.Stats().Dropped == 0 {
		t.Errorf("%d marks, stats %+v: want the claim left alone and counted as dropped", st.marks, w.Stats())
	}
}
