package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// The Store service. Mutations go to the leader and are retried under the
// policy in DESIGN.md, with request IDs filled in as for the Admin service.

// Claim reserves quantity of an item for a user and returns the claim. A
// refusal is an error matching ErrSoldOut, ErrLimitReached, ErrNotEligible,
// ErrCampaignClosed, ErrNotFound, ...; Reason(err) gives the server's reason.
// An empty requestID gets a new one; pass the same ID to retry the same
// claim after an error for which IsRetryable is true.
func (s *Store) Claim(ctx context.Context, campaign, item, user string, quantity uint32, requestID string) (*flashdpb.Claim, error) {
	req := &flashdpb.ClaimBatchRequest{Claims: []*flashdpb.ClaimRequest{{
		RequestId:  requestID,
		CampaignId: campaign,
		ItemId:     item,
		UserId:     user,
		Quantity:   quantity,
	}}}
	resp, err := s.ClaimBatch(ctx, req)
	if err != nil {
		return nil, err
	}
	if n := len(resp.GetOutcomes()); n != 1 {
		return nil, fmt.Errorf("claim batch of 1 answered with %d outcomes", n)
	}
	outcome := resp.GetOutcomes()[0]
	if outcome.GetReason() != flashdpb.Reason_REASON_UNSPECIFIED {
		return nil, outcomeError(outcome)
	}
	if outcome.GetClaim() == nil {
		return nil, fmt.Errorf("claim granted without a claim record")
	}
	return outcome.GetClaim(), nil
}

// ClaimBatch sends many claims as one request; claims without a request ID
// get one. Refusals are per-claim outcomes, not errors: an error is about
// the batch as a whole.
func (s *Store) ClaimBatch(ctx context.Context, req *flashdpb.ClaimBatchRequest) (*flashdpb.ClaimBatchResponse, error) {
	for _, c := range req.GetClaims() {
		ensureRequestID(&c.RequestId)
	}
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.ClaimBatch)
}

// Settle confirms a reserved claim (reserved stock becomes sold).
func (s *Store) Settle(ctx context.Context, req *flashdpb.SettleRequest) (*flashdpb.SettleResponse, error) {
	ensureRequestID(&req.RequestId)
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.Settle)
}

// Release undoes a reserved claim (its stock goes back on sale).
func (s *Store) Release(ctx context.Context, req *flashdpb.ReleaseRequest) (*flashdpb.ReleaseResponse, error) {
	ensureRequestID(&req.RequestId)
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.Release)
}

// MarkOrdering records, before a settlement worker places a claim's order,
// that the order may exist: the reservation is then not released at its
// deadline but kept to be settled or compensated. Refusals match
// ErrCompensating, ErrAlreadySettled, ErrAlreadyReleased.
func (s *Store) MarkOrdering(ctx context.Context, req *flashdpb.MarkOrderingRequest) (*flashdpb.MarkOrderingResponse, error) {
	ensureRequestID(&req.RequestId)
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.MarkOrdering)
}

// MarkCancelling records, before a settlement worker cancels the order of a
// claim to compensate, that it does: Settle is refused from then on.
// Refusals match ErrNotCompensating, ErrAlreadySettled, ErrAlreadyReleased.
func (s *Store) MarkCancelling(ctx context.Context, req *flashdpb.MarkCancellingRequest) (*flashdpb.MarkCancellingResponse, error) {
	ensureRequestID(&req.RequestId)
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.MarkCancelling)
}

// GetItem reads an item's counters; a stale read may be answered by any node.
func (s *Store) GetItem(ctx context.Context, req *flashdpb.GetItemRequest) (*flashdpb.GetItemResponse, error) {
	return storeCall(ctx, s, readRoute(req.GetConsistency()), req, flashdpb.StoreClient.GetItem)
}

// GetCampaign reads a campaign and its items; a stale read may be answered
// by any node.
func (s *Store) GetCampaign(ctx context.Context, req *flashdpb.GetCampaignRequest) (*flashdpb.GetCampaignResponse, error) {
	return storeCall(ctx, s, readRoute(req.GetConsistency()), req, flashdpb.StoreClient.GetCampaign)
}

// ListClaims lists a user's claims; a stale read may be answered by any node.
func (s *Store) ListClaims(ctx context.Context, req *flashdpb.ListClaimsRequest) (*flashdpb.ListClaimsResponse, error) {
	return storeCall(ctx, s, readRoute(req.GetConsistency()), req, flashdpb.StoreClient.ListClaims)
}

// Watch opens a change stream on one node (the believed leader, else the
// next endpoint), without retries: a caller that watches for long reopens
// the stream when it breaks.
func (s *Store) Watch(ctx context.Context, req *flashdpb.WatchRequest) (grpc.ServerStreamingClient[flashdpb.WatchEvent], error) {
	ep, err := s.first(routeLeader)
	if err != nil {
		return nil, err
	}
	stream, err := ep.store.Watch(ctx, req)
	if err != nil {
		return nil, newError(err)
	}
	return stream, nil
}
