package rpc

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// TestCardCollectOnACluster runs a card-collect campaign on three nodes with
// every invariant checked after every apply: concurrent draws never pass a
// cap, concurrent redemptions never pass the pool, the pot split sums to the
// pot, and every replica ends with the same digest.
func TestCardCollectOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := startLoopbackCluster(t, 3, true)
	l := c.leader(t)
	admin, store := pb.NewAdminClient(c.conns[l]), pb.NewStoreClient(c.conns[l])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const users, drawsEach, pool, rareCap, pot = 20, 12, 8, 15, 10007
	_, err := admin.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: "spring", Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, Start: timestamppb.New(time.Now().Add(-time.Minute)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.DefineCards(ctx, &pb.DefineCardsRequest{
		CampaignId: "spring", SetTypes: []string{"fu", "lu", "shou"}, RewardPool: pool, PotCents: pot,
		Types: []*pb.CardType{{Id: "fu", Weight: 6}, {Id: "lu", Weight: 3}, {Id: "shou", Weight: 1, Cap: rareCap}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.DefineCards(ctx, &pb.DefineCardsRequest{CampaignId: "spring", Types: []*pb.CardType{{Id: "x", Weight: 1}}, SetTypes: []string{"x"}})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second definition: %v, want ALREADY_EXISTS", err)
	}
	if _, err := admin.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: "spring", State: pb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var rewards, poolEmpty atomic.Int64
	errs := make(chan error, users)
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprint("user-", u)
			for range 2 { // the retry of a grant gives nothing more
				if _, err := store.GrantDraws(ctx, &pb.GrantDrawsRequest{CampaignId: "spring", UserId: user, Count: drawsEach, RequestId: "grant-" + user}); err != nil {
					errs <- err
					return
				}
			}
			for range drawsEach {
				if _, err := store.DrawCard(ctx, &pb.DrawCardRequest{CampaignId: "spring", UserId: user}); err != nil && reasonOf(err) != "SOLD_OUT" {
					errs <- err
					return
				}
			}
			if _, err := store.DrawCard(ctx, &pb.DrawCardRequest{CampaignId: "spring", UserId: user}); reasonOf(err) != "NO_DRAWS_LEFT" {
				errs <- fmt.Errorf("draw %d of %d: %v, want NO_DRAWS_LEFT", drawsEach+1, drawsEach, err)
				return
			}
			for {
				_, err := store.RedeemSet(ctx, &pb.RedeemSetRequest{CampaignId: "spring", UserId: user})
				switch reasonOf(err) {
				case "":
					rewards.Add(1)
					continue
				case "POOL_EMPTY":
					poolEmpty.Add(1)
				case "NO_FULL_SET":
				default:
					errs <- err
				}
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cards, err := store.GetCardCollect(ctx, &pb.GetCardCollectRequest{CampaignId: "spring"})
	if err != nil {
		t.Fatal(err)
	}
	cc := cards.Cards
	var issued uint64
	for _, ty := range cc.Types {
		issued += ty.Issued
	}
	t.Logf("issued %v; %d rewards given, %d users found the pool empty", cc.Types, rewards.Load(), poolEmpty.Load())
	if issued != users*drawsEach {
		t.Errorf("%d cards issued, want %d", issued, users*drawsEach)
	}
	if cc.Types[2].Issued > rareCap {
		t.Errorf("rare card issued %d times, cap %d", cc.Types[2].Issued, rareCap)
	}
	if cc.RewardsGiven != uint64(rewards.Load()) || cc.RewardsGiven > pool {
		t.Errorf("rewards given %d, callers got %d, pool %d", cc.RewardsGiven, rewards.Load(), pool)
	}
	if cc.RewardsGiven < pool && poolEmpty.Load() > 0 {
		t.Errorf("pool reported empty after %d of %d rewards", cc.RewardsGiven, pool)
	}

	split, err := admin.CloseAndSplit(ctx, &pb.CloseAndSplitRequest{CampaignId: "spring"})
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, p := range split.Payouts {
		sum += p.Cents
	}
	if len(split.Payouts) > 0 && sum != pot {
		t.Errorf("payouts %v sum to %d, pot %d", split.Payouts, sum, pot)
	}
	t.Logf("%d full-set holders at close; payouts %v", len(split.Payouts), split.Payouts)
	if _, err := store.DrawCard(ctx, &pb.DrawCardRequest{CampaignId: "spring", UserId: "user-0"}); reasonOf(err) != "CAMPAIGN_CLOSED" {
		t.Errorf("draw after close: %v", err)
	}

	// Every replica applies the same log to the same state.
	var index uint64
	waitFor(t, ctx, "replicas to apply the same index", func() bool {
		index = c.nodes[l].FSM().AppliedIndex()
		for _, n := range c.nodes {
			if n.FSM().AppliedIndex() != index {
				return false
			}
		}
		return true
	})
	want, _ := c.nodes[l].FSM().Digest()
	for _, n := range c.nodes {
		if d, at := n.FSM().Digest(); d != want || at != index {
			t.Errorf("node %s: digest %s at %d, leader %s at %d", n.ID(), d, at, want, index)
		}
	}
}

// TestLeaseClaimsOnACluster: two workers of one group never hold the same
// claim; a second group sees every claim.
func TestLeaseClaimsOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := startLoopbackCluster(t, 3, true)
	l := c.leader(t)
	openSale(t, pb.NewAdminClient(c.conns[l]), 10, 1)
	store := pb.NewStoreClient(c.conns[l])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := store.ClaimBatch(ctx, claimBatch("u", 6)); err != nil {
		t.Fatal(err)
	}
	lease := func(group, worker string, campaigns ...string) []uint64 {
		res, err := store.LeaseClaims(ctx, &pb.LeaseClaimsRequest{
			Group: group, Worker: worker, Max: 4, Lease: durationpb.New(time.Minute), Campaigns: campaigns,
		})
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, c := range res.Claims {
			ids = append(ids, c.Id)
		}
		return ids
	}
	if a, b, other := lease("g", "a"), lease("g", "b"), lease("h", "x"); fmt.Sprint(a, b, other) != "[1 2 3 4] [5 6] [1 2 3 4]" {
		t.Fatalf("leased a %v, b %v, other group %v", a, b, other)
	}
	// A worker of other campaigns gets none of spring's claims; one of
	// spring gets them.
	if none, some := lease("k", "x", "autumn"), lease("k", "y", "autumn", "spring"); fmt.Sprint(none, some) != "[] [1 2 3 4]" {
		t.Fatalf("leased for autumn %v, for autumn and spring %v", none, some)
	}
	for _, bad := range []string{"", "bad id\n"} {
		_, err := store.LeaseClaims(ctx, &pb.LeaseClaimsRequest{Group: "g", Worker: "a", Max: 1, Lease: durationpb.New(time.Minute), Campaigns: []string{bad}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("lease for campaign %q: %v", bad, err)
		}
	}
	_, err := store.LeaseClaims(ctx, &pb.LeaseClaimsRequest{Group: "g", Worker: "a", Max: 1})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("lease without a duration: %v", err)
	}
}

func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return info.GetReason()
		}
	}
	return err.Error()
}

// TestDrawCardBatchOnACluster: the draws of one batch are one log entry,
// each answered as its own DrawCard would be, a refusal as a result; a
// draw of a batch retried alone answers the same card.
func TestDrawCardBatchOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := startLoopbackCluster(t, 3, true)
	l := c.leader(t)
	admin, store := pb.NewAdminClient(c.conns[l]), pb.NewStoreClient(c.conns[l])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: "spring", Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, Start: timestamppb.New(time.Now().Add(-time.Minute)),
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DefineCards(ctx, &pb.DefineCardsRequest{
		CampaignId: "spring", SetTypes: []string{"fu", "lu"}, RewardPool: 1,
		Types: []*pb.CardType{{Id: "fu", Weight: 1}, {Id: "lu", Weight: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: "spring", State: pb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()}); err != nil {
		t.Fatal(err)
	}
	for user, n := range map[string]uint32{"a": 2, "b": 1} {
		if _, err := store.GrantDraws(ctx, &pb.GrantDrawsRequest{CampaignId: "spring", UserId: user, Count: n}); err != nil {
			t.Fatal(err)
		}
	}
	draw := func(user, requestID string) *pb.DrawCardRequest {
		return &pb.DrawCardRequest{CampaignId: "spring", UserId: user, RequestId: requestID}
	}
	before := c.nodes[l].FSM().AppliedIndex()
	resp, err := store.DrawCardBatch(ctx, &pb.DrawCardBatchRequest{Draws: []*pb.DrawCardRequest{
		draw("a", "r1"), draw("a", "r2"), draw("a", "r3"), draw("b", "r4"), draw("", "r5"), draw("a", "r1"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Index != before+1 {
		t.Errorf("the batch was applied at index %d, the last before it %d: not one entry", resp.Index, before)
	}
	want := []pb.Reason{
		pb.Reason_REASON_UNSPECIFIED, pb.Reason_REASON_UNSPECIFIED, pb.Reason_REASON_NO_DRAWS_LEFT,
		pb.Reason_REASON_UNSPECIFIED, pb.Reason_REASON_INVALID_ARGUMENT, pb.Reason_REASON_UNSPECIFIED,
	}
	if len(resp.Results) != len(want) {
		t.Fatalf("%d results for %d draws", len(resp.Results), len(want))
	}
	for i, r := range resp.Results {
		if r.Reason != want[i] || (r.Reason == pb.Reason_REASON_UNSPECIFIED) != (r.Draw != nil) {
			t.Errorf("draw %d: %v (%s), drawn %v; want %v", i, r.Reason, r.Message, r.Draw, want[i])
		}
	}
	if first, retry := resp.Results[0].Draw, resp.Results[5].Draw; retry.GetCardType() != first.GetCardType() || first.GetRequestId() != "r1" {
		t.Errorf("retry in the batch drew %v, the first %v", retry, first)
	}
	if h := resp.Results[1].Draw.GetHolder(); h.GetDrawsLeft() != 0 || h.GetUserId() != "a" {
		t.Errorf("a after two draws: %v", h)
	}
	alone, err := store.DrawCard(ctx, draw("a", "r2"))
	if err != nil || alone.CardType != resp.Results[1].Draw.GetCardType() {
		t.Errorf("draw r2 retried alone: %v, %v; the batch drew %q", alone, err, resp.Results[1].Draw.GetCardType())
	}
	for _, bad := range []*pb.DrawCardBatchRequest{{}, {Draws: make([]*pb.DrawCardRequest, pb.MaxBatchDraws+1)}} {
		if _, err := store.DrawCardBatch(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("a batch of %d draws: %v, want INVALID_ARGUMENT", len(bad.Draws), err)
		}
	}
}
