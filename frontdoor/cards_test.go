package frontdoor

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// cardFakeStore adds the card calls to fakeStore: a pool that runs out after
// one redemption, and draws that always give "fu".
type cardFakeStore struct {
	*fakeStore
	draws, redeems int
	lastUser       string
}

func (s *cardFakeStore) DrawCard(_ context.Context, req *pb.DrawCardRequest) (*pb.DrawCardResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draws++
	s.lastUser = req.GetUserId()
	return &pb.DrawCardResponse{CardType: "fu", Holder: &pb.CardHolder{UserId: req.GetUserId()}}, nil
}

func (s *cardFakeStore) RedeemSet(_ context.Context, req *pb.RedeemSetRequest) (*pb.RedeemSetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redeems++
	if s.redeems > 1 {
		return nil, newStatusError(codes.FailedPrecondition, "POOL_EMPTY", "every reward of the pool has been given", nil, 0)
	}
	return &pb.RedeemSetResponse{Reward: 1}, nil
}

func (s *cardFakeStore) GetCards(_ context.Context, req *pb.GetCardsRequest) (*pb.GetCardsResponse, error) {
	return &pb.GetCardsResponse{Holder: &pb.CardHolder{UserId: req.GetUserId(), DrawsLeft: 3}}, nil
}

func TestCardCallsGoThroughTheFunnel(t *testing.T) {
	store := &cardFakeStore{fakeStore: newFakeStore()}
	d, _ := newTestDoor(t, store, nil)
	openCampaign(d, 1, 0, 1) // flash sale "c"
	d.catalog.updateCampaign(&pb.Campaign{
		Id: "cards", Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, State: pb.CampaignState_CAMPAIGN_STATE_OPEN,
		Start: timestamppb.New(t0.Add(-time.Minute)),
	})
	d.catalog.updateCampaign(&pb.Campaign{
		Id: "later", Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, State: pb.CampaignState_CAMPAIGN_STATE_OPEN,
		Start: timestamppb.New(t0.Add(time.Hour)),
	})

	resp, err := d.DrawCard(userCtx("alice"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards"})
	if err != nil || resp.CardType != "fu" || store.lastUser != "alice" || resp.RequestId == "" {
		t.Fatalf("draw: %v %v (store saw user %q)", resp, err, store.lastUser)
	}
	if _, err := d.DrawCard(context.Background(), &pb.FrontDoorDrawCardRequest{CampaignId: "cards"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("draw without credentials: %v", err)
	}
	for campaign, want := range map[string]codes.Code{"c": codes.InvalidArgument, "nope": codes.NotFound, "later": codes.FailedPrecondition} {
		if _, err := d.DrawCard(userCtx("alice"), &pb.FrontDoorDrawCardRequest{CampaignId: campaign}); status.Code(err) != want {
			t.Errorf("draw in %q: %v, want %v", campaign, err, want)
		}
	}
	if store.draws != 1 {
		t.Errorf("the store saw %d draws, want 1: refusals are answered at the door", store.draws)
	}

	if _, err := d.RedeemSet(userCtx("alice"), &pb.FrontDoorRedeemSetRequest{CampaignId: "cards"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := d.RedeemSet(userCtx("bob"), &pb.FrontDoorRedeemSetRequest{CampaignId: "cards"})
		if reasonOf(err) != "POOL_EMPTY" || status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("redeem from an empty pool: %v", err)
		}
	}
	if store.redeems != 2 {
		t.Errorf("the store saw %d redemptions, want 2: an empty pool is remembered", store.redeems)
	}
	if h, err := d.GetMyCards(userCtx("carol"), &pb.GetMyCardsRequest{CampaignId: "cards"}); err != nil || h.UserId != "carol" {
		t.Errorf("GetMyCards: %v %v", h, err)
	}
}

// TestWatchClearsSoldOut: once the store says stock is available again (a
// release or an expiry), the door's sold-out hint goes.
func TestWatchClearsSoldOut(t *testing.T) {
	store := newFakeStore()
	d, _ := newTestDoor(t, store, nil)
	store.events <- &pb.WatchEvent{Index: 3, Campaign: &pb.Campaign{Id: "c", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, State: pb.CampaignState_CAMPAIGN_STATE_OPEN}}
	store.events <- &pb.WatchEvent{Index: 3, Item: &pb.Item{CampaignId: "c", Id: "i", Total: 10, Available: 0, Reserved: 10, PerUserLimit: 1}}
	d.Start()
	select {
	case <-d.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("door not ready")
	}
	it := d.catalog.item("c", "i")
	waitFor(t, func() bool { return it != nil && it.soldOut.Load() })
	store.events <- &pb.WatchEvent{Index: 7, Item: &pb.Item{CampaignId: "c", Id: "i", Total: 10, Available: 2, Reserved: 8, PerUserLimit: 1}}
	waitFor(t, func() bool { return !it.soldOut.Load() && it.remainingPercent() == 20 })
	// An older event, arriving late, does not bring the hint back.
	store.events <- &pb.WatchEvent{Index: 5, Item: &pb.Item{CampaignId: "c", Id: "i", Total: 10, Available: 0, Reserved: 10, PerUserLimit: 1}}
	store.events <- &pb.WatchEvent{Index: 8, FrontDoorConfig: &pb.FrontDoorConfig{Version: 9}}
	waitFor(t, func() bool { return d.funnel.Load().cfg.Version == 9 })
	if it.soldOut.Load() {
		t.Fatal("a stale event made the item sold out again")
	}
}
