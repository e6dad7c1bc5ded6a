package rpc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/fsm"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// TestOrderingMarks: MarkOrdering and MarkCancelling over gRPC, with the
// leader's own Expire: a marked reservation past its deadline is kept to
// compensate, settles, or, once cancelling, refuses Settle with
// FAILED_PRECONDITION COMPENSATING and is released.
func TestOrderingMarks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := startLoopbackCluster(t, 1, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin, store := pb.NewAdminClient(c.conns[0]), pb.NewStoreClient(c.conns[0])
	_, err := admin.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: "spring", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Start: timestamppb.New(time.Now().Add(-time.Minute)),
		ReservationTtl: durationpb.New(500 * time.Millisecond),
	}})
	if err == nil {
		_, err = admin.AddItem(ctx, &pb.AddItemRequest{CampaignId: "spring", ItemId: "lantern", Stock: 5})
	}
	if err == nil {
		_, err = admin.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: "spring", State: pb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()})
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.ClaimBatch(ctx, claimBatch("u", 3)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{1, 2} {
		resp, err := store.MarkOrdering(ctx, &pb.MarkOrderingRequest{ClaimId: id, RequestId: fmt.Sprint("order-", id)})
		if err != nil || resp.Claim.State != pb.ClaimState_CLAIM_STATE_ORDERING {
			t.Fatalf("mark ordering %d: %v, %v", id, resp, err)
		}
	}
	if _, err := store.MarkCancelling(ctx, &pb.MarkCancellingRequest{ClaimId: 1}); status.Code(err) != codes.FailedPrecondition ||
		errorInfo(t, err).Reason != "NOT_COMPENSATING" {
		t.Fatalf("mark cancelling before the deadline: %v, want FAILED_PRECONDITION NOT_COMPENSATING", err)
	}
	machine := c.nodes[0].FSM()
	waitFor(t, ctx, "the leader's expiry", func() bool {
		c1, _ := machine.Claim(1)
		c3, _ := machine.Claim(3)
		return c1.State == fsm.ClaimToCompensate && c3.State == fsm.ClaimReleased
	})
	resp, err := store.MarkCancelling(ctx, &pb.MarkCancellingRequest{ClaimId: 1, RequestId: "cancel-1"})
	if err != nil || resp.Claim.State != pb.ClaimState_CLAIM_STATE_CANCELLING {
		t.Fatalf("mark cancelling: %v, %v", resp, err)
	}
	if _, err := store.Settle(ctx, &pb.SettleRequest{ClaimId: 1}); status.Code(err) != codes.FailedPrecondition ||
		errorInfo(t, err).Reason != "COMPENSATING" {
		t.Fatalf("settle of a cancelling claim: %v, want FAILED_PRECONDITION COMPENSATING", err)
	}
	if r, err := store.Release(ctx, &pb.ReleaseRequest{ClaimId: 1}); err != nil || r.Claim.State != pb.ClaimState_CLAIM_STATE_RELEASED {
		t.Fatalf("release after cancelling: %v, %v", r, err)
	}
	if r, err := store.Settle(ctx, &pb.SettleRequest{ClaimId: 2}); err != nil || r.Claim.State != pb.ClaimState_CLAIM_STATE_SETTLED {
		t.Fatalf("settle of a claim to compensate: %v, %v", r, err)
	}
	if _, err := store.MarkOrdering(ctx, &pb.MarkOrderingRequest{ClaimId: 3}); errorInfo(t, err).Reason != "ALREADY_RELEASED" {
		t.Fatalf("mark ordering of an expired reservation: %v", err)
	}
	it, err := store.GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern"})
	if err != nil || it.Item.Available != 4 || it.Item.Reserved != 0 || it.Item.Sold != 1 {
		t.Fatalf("item %v, %v; want 4 available, 1 sold", it.GetItem(), err)
	}
}
