package client

import (
	"context"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// Card-collect campaigns and the settlement feed on the Store and Admin
// services. Mutations carry a request ID (filled in when empty) and are
// retried with it, so a retry never draws, grants or redeems twice.

// DefineCards gives a card-collect campaign in DRAFT its cards, once.
func (s *Store) DefineCards(ctx context.Context, req *flashdpb.DefineCardsRequest) (*flashdpb.CardCollect, error) {
	ensureRequestID(&req.RequestId)
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.DefineCards)
}

// CloseAndSplit closes a card-collect campaign and splits its pot among the
// full-set holders; called again it answers the same payouts.
func (s *Store) CloseAndSplit(ctx context.Context, req *flashdpb.CloseAndSplitRequest) (*flashdpb.CardCollect, error) {
	ensureRequestID(&req.RequestId)
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.CloseAndSplit)
}

// GrantDraws gives a user draw chances. The same request ID grants once.
func (s *Store) GrantDraws(ctx context.Context, req *flashdpb.GrantDrawsRequest) (*flashdpb.GrantDrawsResponse, error) {
	ensureRequestID(&req.RequestId)
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.GrantDraws)
}

// DrawCard spends one of a user's draw chances for one card. A refusal
// matches ErrNoDrawsLeft, ErrSoldOut (every type at its cap),
// ErrCampaignClosed or ErrNotEligible.
func (s *Store) DrawCard(ctx context.Context, req *flashdpb.DrawCardRequest) (*flashdpb.DrawCardResponse, error) {
	ensureRequestID(&req.RequestId)
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.DrawCard)
}

// DrawCardBatch spends many draw chances, one log entry for all; draws
// without a request ID get one, so that retrying the batch never draws
// twice. Each result is a draw or a refusal with its reason, in order.
func (s *Store) DrawCardBatch(ctx context.Context, req *flashdpb.DrawCardBatchRequest) (*flashdpb.DrawCardBatchResponse, error) {
	for _, d := range req.GetDraws() {
		ensureRequestID(&d.RequestId)
	}
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.DrawCardBatch)
}

// RedeemSet spends one full set for one reward. A refusal matches
// ErrNoFullSet, ErrPoolEmpty or ErrCampaignClosed.
func (s *Store) RedeemSet(ctx context.Context, req *flashdpb.RedeemSetRequest) (*flashdpb.RedeemSetResponse, error) {
	ensureRequestID(&req.RequestId)
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.RedeemSet)
}

// GetCards reads a user's draws and cards; a stale read may be answered by
// any node.
func (s *Store) GetCards(ctx context.Context, req *flashdpb.GetCardsRequest) (*flashdpb.GetCardsResponse, error) {
	return storeCall(ctx, s, readRoute(req.GetConsistency()), req, flashdpb.StoreClient.GetCards)
}

// GetCardCollect reads a campaign's cards, rewards and payouts; a stale read
// may be answered by any node.
func (s *Store) GetCardCollect(ctx context.Context, req *flashdpb.GetCardCollectRequest) (*flashdpb.GetCardCollectResponse, error) {
	return storeCall(ctx, s, readRoute(req.GetConsistency()), req, flashdpb.StoreClient.GetCardCollect)
}

// LeaseClaims takes reserved claims from the settlement feed for a worker
// (see cmd/flashd/settler). A retry after a lost answer leases again; the
// claims of the lost answer return to the feed when their lease ends.
func (s *Store) LeaseClaims(ctx context.Context, req *flashdpb.LeaseClaimsRequest) (*flashdpb.LeaseClaimsResponse, error) {
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.LeaseClaims)
}
