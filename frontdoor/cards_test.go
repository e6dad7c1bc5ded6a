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
// one redemption, and draws that always give "fu", drawsEach per user,
// repeated request IDs answered with their first result.
type cardFakeStore struct {
	*fakeStore
	draws, drawBatches, redeems int
	lastUser                    string
	drawsEach                   uint64
	drawn                       map[string]uint64             // by user
	first                       map[string]*pb.DrawCardResult // by request ID
	arrived, release            chan struct{}                 // if set, a draw batch says it arrived, then waits to be released
	rewarded                    map[string]bool               // redemptions granted, by request ID
}

func newCardFakeStore() *cardFakeStore {
	return &cardFakeStore{fakeStore: newFakeStore(), drawsEach: 1, drawn: map[string]uint64{}, first: map[string]*pb.DrawCardResult{}}
}

func (s *cardFakeStore) DrawCardBatch(ctx context.Context, req *pb.DrawCardBatchRequest) (*pb.DrawCardBatchResponse, error) {
	if s.arrived != nil {
		s.arrived <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drawBatches++
	out := &pb.DrawCardBatchResponse{}
	for _, d := range req.GetDraws() {
		s.draws++
		s.lastUser = d.GetUserId()
		r, ok := s.first[d.GetRequestId()]
		switch {
		case ok:
		case s.drawn[d.GetUserId()] >= s.drawsEach:
			r = &pb.DrawCardResult{Reason: pb.Reason_REASON_NO_DRAWS_LEFT, Message: "no draw chance left"}
		default:
			s.drawn[d.GetUserId()]++
			r = &pb.DrawCardResult{Draw: &pb.DrawCardResponse{CardType: "fu", Holder: &pb.CardHolder{
				UserId: d.GetUserId(), DrawsLeft: s.drawsEach - s.drawn[d.GetUserId()],
			}}}
		}
		s.first[d.GetRequestId()] = r
		out.Results = append(out.Results, r)
	}
	return out, nil
}

func (s *cardFakeStore) RedeemSet(_ context.Context, req *pb.RedeemSetRequest) (*pb.RedeemSetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redeems++
	if s.rewarded == nil {
		s.rewarded = map[string]bool{}
	}
	switch {
	case s.rewarded[req.GetRequestId()]: // a repeat: its first answer
	case s.redeems > 1:
		return nil, newStatusError(codes.FailedPrecondition, "POOL_EMPTY", "every reward of the pool has been given", nil, 0)
	default:
		s.rewarded[req.GetRequestId()] = true
	}
	return &pb.RedeemSetResponse{Reward: 1}, nil
}

func (s *cardFakeStore) GetCards(_ context.Context, req *pb.GetCardsRequest) (*pb.GetCardsResponse, error) {
	return &pb.GetCardsResponse{Holder: &pb.CardHolder{UserId: req.GetUserId(), DrawsLeft: 3}}, nil
}

func TestCardCallsGoThroughTheFunnel(t *testing.T) {
	store := newCardFakeStore()
	d, _ := newTestDoor(t, store, nil)
	openCardCampaign(d)
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
	// Alice's redemption resent after a lost answer: the door remembers
	// the pool as empty, but the store holds her reward, so a resend asks
	// the store; the same request not flagged as a resend does not.
	if _, err := d.RedeemSet(userCtx("alice"), &pb.FrontDoorRedeemSetRequest{CampaignId: "cards", RequestId: "r-alice"}); reasonOf(err) != "POOL_EMPTY" {
		t.Fatalf("a redemption not flagged as a resend: %v, want POOL_EMPTY from the door", err)
	}
	store.rewarded["r-alice"] = true // as if that first attempt had been granted
	redeemed, err := d.RedeemSet(userCtx("alice"), &pb.FrontDoorRedeemSetRequest{CampaignId: "cards", RequestId: "r-alice", Retry: true})
	if err != nil || redeemed.GetReward() != 1 {
		t.Fatalf("a resent redemption the store granted: %v %v, want its reward", redeemed, err)
	}
	if store.redeems != 3 {
		t.Errorf("the store saw %d redemptions, want 3: only the resend reached it", store.redeems)
	}
	if h, err := d.GetMyCards(userCtx("carol"), &pb.GetMyCardsRequest{CampaignId: "cards"}); err != nil || h.UserId != "carol" {
		t.Errorf("GetMyCards: %v %v", h, err)
	}
}

// openCardCampaign puts flash sale "c" and open card-collect campaign
// "cards" in the door's catalog and marks it synced.
func openCardCampaign(d *Door) {
	openCampaign(d, 1, 0, 1)
	d.catalog.updateCampaign(&pb.Campaign{
		Id: "cards", Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, State: pb.CampaignState_CAMPAIGN_STATE_OPEN,
		Start: timestamppb.New(t0.Add(-time.Minute)),
	})
}

// TestDrawsShareStoreBatches: draws that arrive while a draw batch is in
// flight leave together in the next batch, each answered with its own
// result (a draw, or the store's refusal with its reason).
func TestDrawsShareStoreBatches(t *testing.T) {
	store := newCardFakeStore()
	store.arrived, store.release = make(chan struct{}, 2), make(chan struct{})
	d, _ := newTestDoor(t, store, func(c *Config) { c.BatchesInFlight = 1; c.BatchWindow = time.Second })
	openCardCampaign(d)
	store.drawn["dora"] = 1 // dora has no draw left: the store refuses her

	first := make(chan error, 1)
	go func() {
		_, err := d.DrawCard(userCtx("first"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards"})
		first <- err
	}()
	<-store.arrived // the first batch, of one draw, is at the store
	users := []string{"ann", "bob", "cid", "dora"}
	type answer struct {
		resp *pb.DrawCardResponse
		err  error
	}
	answers := make([]chan answer, len(users))
	for i, u := range users {
		answers[i] = make(chan answer, 1)
		go func() {
			resp, err := d.DrawCard(userCtx(u), &pb.FrontDoorDrawCardRequest{CampaignId: "cards", RequestId: "req-" + u})
			answers[i] <- answer{resp, err}
		}()
	}
	waitFor(t, func() bool { return d.draws.claimsIn.Load() == 1+int64(len(users)) })
	store.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first draw: %v", err)
	}
	<-store.arrived // the second batch: the four draws that waited
	store.release <- struct{}{}
	for i, u := range users {
		a := <-answers[i]
		switch u {
		case "dora":
			if reasonOf(a.err) != "NO_DRAWS_LEFT" || status.Code(a.err) != codes.FailedPrecondition {
				t.Errorf("dora: %v, want NO_DRAWS_LEFT", a.err)
			}
		default:
			if a.err != nil || a.resp.GetCardType() != "fu" || a.resp.GetRequestId() != "req-"+u || a.resp.GetHolder().GetUserId() != u {
				t.Errorf("%s: %v %v", u, a.resp, a.err)
			}
		}
	}
	if store.drawBatches != 2 || store.draws != 5 {
		t.Fatalf("%d draws in %d store batches, want 5 in 2", store.draws, store.drawBatches)
	}
}

// TestNoDrawsLeftIsRemembered: once the store said a user has no draw
// left (a refusal, or a draw that left none), the door answers her next
// presses itself, for noDrawsHintTTL; then the store is asked again.
func TestNoDrawsLeftIsRemembered(t *testing.T) {
	store := newCardFakeStore()
	d, clock := newTestDoor(t, store, nil)
	openCardCampaign(d)
	if _, err := d.DrawCard(userCtx("ann"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards", RequestId: "ann-1"}); err != nil {
		t.Fatal(err) // her only draw: it leaves none
	}
	for range 5 {
		_, err := d.DrawCard(userCtx("ann"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards"})
		if reasonOf(err) != "NO_DRAWS_LEFT" || status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("a press after the last draw: %v", err)
		}
	}
	if store.draws != 1 {
		t.Fatalf("the store saw %d draws, want 1", store.draws)
	}
	// A repeat of her draw's request ID is the store's to answer (with her
	// card), and so is a retry flagged by the client library.
	if resp, err := d.DrawCard(userCtx("ann"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards", RequestId: "ann-1"}); err != nil || resp.GetCardType() != "fu" {
		t.Fatalf("a repeat of her draw: %v %v", resp, err)
	}
	if _, err := d.DrawCard(userCtx("ann"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards", RequestId: "ann-2", Retry: true}); reasonOf(err) != "NO_DRAWS_LEFT" {
		t.Fatalf("a retry: %v", err)
	}
	if store.draws != 3 {
		t.Fatalf("the store saw %d draws, want 3", store.draws)
	}
	// Another user, and ann in another campaign, are not refused by it.
	if _, err := d.DrawCard(userCtx("bob"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards"}); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// Past the hint, the store decides again: ann was granted one more.
	store.drawsEach = 2
	clock.add(noDrawsHintTTL)
	if _, err := d.DrawCard(userCtx("ann"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards"}); err != nil {
		t.Fatalf("ann after a new grant and the hint's end: %v", err)
	}
	// A refusal is learnt too.
	store.drawn["cid"] = 2
	for range 3 {
		if _, err := d.DrawCard(userCtx("cid"), &pb.FrontDoorDrawCardRequest{CampaignId: "cards"}); reasonOf(err) != "NO_DRAWS_LEFT" {
			t.Fatalf("cid: %v", err)
		}
	}
	if store.draws != 6 {
		t.Fatalf("the store saw %d draws, want 6", store.draws)
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
