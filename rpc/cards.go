package rpc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/fsm/fsmpb"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Card-collect campaigns (DESIGN.md section 5) and the settlement feed, on
// the Store and Admin services.

// GrantDraws gives a user draw chances (idempotent by request ID).
func (s *StoreServer) GrantDraws(ctx context.Context, req *pb.GrantDrawsRequest) (*pb.GrantDrawsResponse, error) {
	if err := validateUserRef(req.GetCampaignId(), req.GetUserId(), req.GetRequestId()); err != nil {
		return nil, err
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_GRANT_DRAWS, RequestId: req.GetRequestId(),
		GrantDraws: &fsmpb.GrantDraws{CampaignId: req.GetCampaignId(), UserId: req.GetUserId(), Count: req.GetCount()},
	})
	if err != nil {
		return nil, err
	}
	return &pb.GrantDrawsResponse{Holder: holderToPB(res.Holder)}, nil
}

// DrawCard spends one draw chance for one card.
func (s *StoreServer) DrawCard(ctx context.Context, req *pb.DrawCardRequest) (*pb.DrawCardResponse, error) {
	if err := validateUserRef(req.GetCampaignId(), req.GetUserId(), req.GetRequestId()); err != nil {
		return nil, err
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD, RequestId: req.GetRequestId(),
		DrawCard: &fsmpb.DrawCard{CampaignId: req.GetCampaignId(), UserId: req.GetUserId()},
	})
	if err != nil {
		return nil, err
	}
	return &pb.DrawCardResponse{CardType: res.CardType, Holder: holderToPB(res.Holder), RequestId: req.GetRequestId()}, nil
}

// DrawCardBatch proposes the valid draws as one log entry and answers one
// result per draw in request order; a draw with a malformed ID is refused
// INVALID_ARGUMENT without reaching the log.
func (s *StoreServer) DrawCardBatch(ctx context.Context, req *pb.DrawCardBatchRequest) (*pb.DrawCardBatchResponse, error) {
	n := len(req.GetDraws())
	if n == 0 || n > pb.MaxBatchDraws {
		return nil, invalidArgument(fmt.Errorf("a batch holds 1 to %d draws, not %d", pb.MaxBatchDraws, n))
	}
	results := make([]*pb.DrawCardResult, n)
	batch := &fsmpb.DrawCardBatch{Draws: make([]*fsmpb.DrawCardBatchEntry, 0, n)}
	proposed := make([]int, 0, n) // request position of each proposed draw
	for i, d := range req.GetDraws() {
		if err := validateUserRef(d.GetCampaignId(), d.GetUserId(), d.GetRequestId()); err != nil {
			results[i] = &pb.DrawCardResult{Reason: pb.Reason_REASON_INVALID_ARGUMENT, Message: status.Convert(err).Message()}
			continue
		}
		batch.Draws = append(batch.Draws, &fsmpb.DrawCardBatchEntry{
			RequestId: d.GetRequestId(), CampaignId: d.GetCampaignId(), UserId: d.GetUserId(),
		})
		proposed = append(proposed, i)
	}
	var index uint64
	if len(proposed) > 0 {
		start := time.Now()
		res, idx, err := s.node.Propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD_BATCH, DrawCardBatch: batch})
		if err != nil {
			return nil, nodeError(s.node, err)
		}
		if len(res.Draws) != len(proposed) {
			return nil, status.Errorf(codes.Internal, "state machine gave %d results for %d draws", len(res.Draws), len(proposed))
		}
		s.metrics.observeDrawBatch(len(proposed), time.Since(start))
		index = idx
		for j, r := range res.Draws {
			results[proposed[j]] = drawResultToPB(r, batch.Draws[j].GetRequestId())
		}
	}
	return &pb.DrawCardBatchResponse{Results: results, Index: index}, nil
}

func drawResultToPB(r *fsm.Result, requestID string) *pb.DrawCardResult {
	o := r.Outcomes[0]
	if o.Reason != fsm.ReasonOK {
		return &pb.DrawCardResult{Reason: pb.Reason(o.Reason), Message: o.Message}
	}
	return &pb.DrawCardResult{Draw: &pb.DrawCardResponse{CardType: r.CardType, Holder: holderToPB(r.Holder), RequestId: requestID}}
}

// RedeemSet spends one full set for one reward.
func (s *StoreServer) RedeemSet(ctx context.Context, req *pb.RedeemSetRequest) (*pb.RedeemSetResponse, error) {
	if err := validateUserRef(req.GetCampaignId(), req.GetUserId(), req.GetRequestId()); err != nil {
		return nil, err
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_REDEEM_SET, RequestId: req.GetRequestId(),
		RedeemSet: &fsmpb.RedeemSet{CampaignId: req.GetCampaignId(), UserId: req.GetUserId()},
	})
	if err != nil {
		return nil, err
	}
	return &pb.RedeemSetResponse{Reward: res.Reward, Holder: holderToPB(res.Holder), RequestId: req.GetRequestId()}, nil
}

// GetCards reads a user's draws and cards.
func (s *StoreServer) GetCards(ctx context.Context, req *pb.GetCardsRequest) (*pb.GetCardsResponse, error) {
	if err := validateUserRef(req.GetCampaignId(), req.GetUserId(), ""); err != nil {
		return nil, err
	}
	index, err := readAt(ctx, s.node, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	h, ok := s.node.FSM().CardHolder(req.GetCampaignId(), req.GetUserId())
	if !ok {
		return nil, noCards(req.GetCampaignId())
	}
	return &pb.GetCardsResponse{Holder: holderToPB(&h), Index: index}, nil
}

// GetCardCollect reads a campaign's cards, rewards and payouts.
func (s *StoreServer) GetCardCollect(ctx context.Context, req *pb.GetCardCollectRequest) (*pb.GetCardCollectResponse, error) {
	if err := pb.ValidateID("campaign id", req.GetCampaignId()); err != nil {
		return nil, invalidArgument(err)
	}
	index, err := readAt(ctx, s.node, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	cc, ok := s.node.FSM().CardCollect(req.GetCampaignId())
	if !ok {
		return nil, noCards(req.GetCampaignId())
	}
	return &pb.GetCardCollectResponse{Cards: cardCollectToPB(&cc), Index: index}, nil
}

// LeaseClaims hands reserved claims from the settlement feed to a worker.
func (s *StoreServer) LeaseClaims(ctx context.Context, req *pb.LeaseClaimsRequest) (*pb.LeaseClaimsResponse, error) {
	if err := pb.ValidateID("group", req.GetGroup()); err != nil {
		return nil, invalidArgument(err)
	}
	if err := pb.ValidateID("worker", req.GetWorker()); err != nil {
		return nil, invalidArgument(err)
	}
	for _, id := range req.GetCampaigns() {
		if err := pb.ValidateID("campaign id", id); err != nil {
			return nil, invalidArgument(err)
		}
	}
	// No request ID: a retried lease leases again, and the claims of a lost
	// answer come back to the feed when their lease ends.
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_LEASE_CLAIMS,
		LeaseClaims: &fsmpb.LeaseClaims{
			Group: req.GetGroup(), Worker: req.GetWorker(), Max: req.GetMax(), LeaseNanos: req.GetLease().AsDuration().Nanoseconds(),
			Campaigns: req.GetCampaigns(),
		},
	})
	if err != nil {
		return nil, err
	}
	return &pb.LeaseClaimsResponse{
		Claims: mapSlice(res.Leased, claimToPB), LeaseDeadline: timeToPB(res.LeaseDeadline), Cursor: res.Cursor,
		Index: s.node.FSM().AppliedIndex(),
	}, nil
}

// DefineCards gives a card-collect campaign its cards.
func (s *AdminServer) DefineCards(ctx context.Context, req *pb.DefineCardsRequest) (*pb.CardCollect, error) {
	if err := pb.ValidateID("campaign id", req.GetCampaignId()); err != nil {
		return nil, invalidArgument(err)
	}
	def := &fsmpb.DefineCards{
		CampaignId: req.GetCampaignId(), SetTypes: req.GetSetTypes(), RewardPool: req.GetRewardPool(),
		PotCents: req.GetPotCents(), DrawsPerUserMax: req.GetDrawsPerUserMax(),
	}
	for _, t := range req.GetTypes() {
		def.Types = append(def.Types, &fsmpb.CardType{TypeId: t.GetId(), Weight: t.GetWeight(), Cap: t.GetCap()})
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_DEFINE_CARDS, RequestId: req.GetRequestId(), DefineCards: def,
	})
	if err != nil {
		return nil, err
	}
	return s.cardsResult(res, req.GetCampaignId())
}

// CloseAndSplit closes a card-collect campaign and splits its pot.
func (s *AdminServer) CloseAndSplit(ctx context.Context, req *pb.CloseAndSplitRequest) (*pb.CardCollect, error) {
	if err := pb.ValidateID("campaign id", req.GetCampaignId()); err != nil {
		return nil, invalidArgument(err)
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_CLOSE_AND_SPLIT, RequestId: req.GetRequestId(),
		CloseAndSplit: &fsmpb.CloseAndSplit{CampaignId: req.GetCampaignId()},
	})
	if err != nil {
		return nil, err
	}
	return s.cardsResult(res, req.GetCampaignId())
}

func (s *AdminServer) cardsResult(res *fsm.Result, campaignID string) (*pb.CardCollect, error) {
	if res.Cards != nil {
		return cardCollectToPB(res.Cards), nil
	}
	cc, ok := s.node.FSM().CardCollect(campaignID)
	if !ok {
		return nil, noCards(campaignID)
	}
	return cardCollectToPB(&cc), nil
}

func validateUserRef(campaignID, userID, requestID string) error {
	if err := pb.ValidateID("campaign id", campaignID); err != nil {
		return invalidArgument(err)
	}
	if err := pb.ValidateID("user id", userID); err != nil {
		return invalidArgument(err)
	}
	if requestID != "" {
		if err := pb.ValidateID("request id", requestID); err != nil {
			return invalidArgument(err)
		}
	}
	return nil
}

func noCards(campaignID string) error {
	return invalidArgument(fmt.Errorf("campaign %q has no card definition (or does not exist)", campaignID))
}

func holderToPB(h *fsm.CardHolder) *pb.CardHolder {
	if h == nil {
		return nil
	}
	out := &pb.CardHolder{
		CampaignId: h.CampaignID, UserId: h.UserID, DrawsLeft: h.DrawsLeft, DrawsGranted: h.DrawsGranted,
		FullSets: h.FullSets, Rewards: h.Rewards,
	}
	for _, c := range h.Cards {
		out.Cards = append(out.Cards, &pb.CardCount{TypeId: c.TypeID, Count: c.Count})
	}
	return out
}

func cardCollectToPB(cc *fsm.CardCollect) *pb.CardCollect {
	out := &pb.CardCollect{
		CampaignId: cc.CampaignID, SetTypes: cc.SetTypes, RewardPool: cc.RewardPool, RewardsGiven: cc.RewardsGiven,
		PotCents: cc.PotCents, DrawsPerUserMax: cc.DrawsPerUserMax, Holders: uint64(cc.Holders),
		FullSetHolders: uint64(cc.FullSetHolders), Split: cc.Split,
	}
	for _, t := range cc.Types {
		out.Types = append(out.Types, &pb.CardType{Id: t.ID, Weight: t.Weight, Cap: t.Cap, Issued: t.Issued})
	}
	for _, p := range cc.Payouts {
		out.Payouts = append(out.Payouts, &pb.Payout{UserId: p.UserID, Cents: p.Cents})
	}
	return out
}
