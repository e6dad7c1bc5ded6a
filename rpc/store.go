package rpc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/flashd/flashd/raftnode"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// watchMinInterval bounds how often one Watch stream recomputes and sends
// changes: applies can come thousands of times a second.
const watchMinInterval = 20 * time.Millisecond

// StoreServer serves flashd.v1.Store on a store node.
type StoreServer struct {
	pb.UnimplementedStoreServer
	node       *raftnode.Node
	metrics    *storeMetrics
	frontDoors *frontDoorRegistry
}

// NewStoreServer returns the Store service of node.
func NewStoreServer(node *raftnode.Node, m *storeMetrics, doors *frontDoorRegistry) *StoreServer {
	return &StoreServer{node: node, metrics: m, frontDoors: doors}
}

// ClaimBatch validates every claim, proposes the valid ones as one log
// entry, and answers one outcome per claim in request order.
func (s *StoreServer) ClaimBatch(ctx context.Context, req *pb.ClaimBatchRequest) (*pb.ClaimBatchResponse, error) {
	n := len(req.GetClaims())
	if n == 0 || n > pb.MaxBatchClaims {
		return nil, invalidArgument(fmt.Errorf("a batch holds 1 to %d claims, not %d", pb.MaxBatchClaims, n))
	}
	outcomes := make([]*pb.ClaimOutcome, n)
	batch := &fsmpb.ClaimBatch{Claims: make([]*fsmpb.ClaimRequest, 0, n)}
	proposed := make([]int, 0, n) // request position of each proposed claim
	for i, c := range req.GetClaims() {
		if err := pb.ValidateClaim(c); err != nil {
			outcomes[i] = &pb.ClaimOutcome{Reason: pb.Reason_REASON_INVALID_ARGUMENT, Message: err.Error()}
			continue
		}
		batch.Claims = append(batch.Claims, &fsmpb.ClaimRequest{
			RequestId: c.RequestId, CampaignId: c.CampaignId, ItemId: c.ItemId, UserId: c.UserId, Quantity: c.Quantity,
		})
		proposed = append(proposed, i)
	}
	var index uint64
	if len(proposed) > 0 {
		start := time.Now()
		res, idx, err := s.node.Propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH, ClaimBatch: batch})
		if err != nil {
			return nil, nodeError(s.node, err)
		}
		s.metrics.observeBatch(len(proposed), time.Since(start))
		index = idx
		for j, o := range res.Outcomes {
			outcomes[proposed[j]] = claimOutcomeToPB(o)
		}
	}
	s.metrics.countOutcomes(outcomes)
	return &pb.ClaimBatchResponse{Outcomes: outcomes, Index: index}, nil
}

func claimOutcomeToPB(o fsm.Outcome) *pb.ClaimOutcome {
	out := &pb.ClaimOutcome{Reason: pb.Reason(o.Reason), Message: o.Message}
	if o.Reason == fsm.ReasonOK {
		out.Claim = claimToPB(o.Claim)
	}
	return out
}

// Settle confirms a reservation (reserved → sold).
func (s *StoreServer) Settle(ctx context.Context, req *pb.SettleRequest) (*pb.SettleResponse, error) {
	c, err := s.changeClaim(ctx, req.GetClaimId(), req.GetRequestId(), &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_SETTLE, Settle: &fsmpb.Settle{ClaimId: req.GetClaimId()},
	})
	if err != nil {
		return nil, err
	}
	return &pb.SettleResponse{Claim: c}, nil
}

// Release undoes a reservation (reserved → available).
func (s *StoreServer) Release(ctx context.Context, req *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	c, err := s.changeClaim(ctx, req.GetClaimId(), req.GetRequestId(), &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_RELEASE, Release: &fsmpb.Release{ClaimId: req.GetClaimId()},
	})
	if err != nil {
		return nil, err
	}
	return &pb.ReleaseResponse{Claim: c}, nil
}

// MarkOrdering records that a settler is about to place the claim's order
// (reserved → ordering): past its deadline it is kept to be compensated
// instead of released.
func (s *StoreServer) MarkOrdering(ctx context.Context, req *pb.MarkOrderingRequest) (*pb.MarkOrderingResponse, error) {
	c, err := s.changeClaim(ctx, req.GetClaimId(), req.GetRequestId(), &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_MARK_ORDERING, MarkOrdering: &fsmpb.MarkOrdering{ClaimId: req.GetClaimId()},
	})
	if err != nil {
		return nil, err
	}
	return &pb.MarkOrderingResponse{Claim: c}, nil
}

// MarkCancelling records that a settler is about to cancel the order of a
// claim to compensate (to compensate → cancelling): Settle is refused from
// then on.
func (s *StoreServer) MarkCancelling(ctx context.Context, req *pb.MarkCancellingRequest) (*pb.MarkCancellingResponse, error) {
	c, err := s.changeClaim(ctx, req.GetClaimId(), req.GetRequestId(), &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_MARK_CANCELLING, MarkCancelling: &fsmpb.MarkCancelling{ClaimId: req.GetClaimId()},
	})
	if err != nil {
		return nil, err
	}
	return &pb.MarkCancellingResponse{Claim: c}, nil
}

func (s *StoreServer) changeClaim(ctx context.Context, id uint64, requestID string, cmd *fsmpb.Command) (*pb.Claim, error) {
	if id == 0 {
		return nil, invalidArgument(fmt.Errorf("claim id is required"))
	}
	if requestID != "" {
		if err := pb.ValidateID("request id", requestID); err != nil {
			return nil, invalidArgument(err)
		}
	}
	cmd.RequestId = requestID
	o, _, err := proposeOne(ctx, s.node, cmd)
	if err != nil {
		return nil, err
	}
	return claimToPB(o.Claim), nil
}

// proposeOne proposes a single-operation command and turns a refusal into a
// status error.
func proposeOne(ctx context.Context, node *raftnode.Node, cmd *fsmpb.Command) (fsm.Outcome, *fsm.Result, error) {
	res, _, err := node.Propose(ctx, cmd)
	if err != nil {
		return fsm.Outcome{}, nil, nodeError(node, err)
	}
	if len(res.Outcomes) != 1 {
		return fsm.Outcome{}, nil, status.Errorf(codes.Internal, "state machine gave %d outcomes for one command", len(res.Outcomes))
	}
	o := res.Outcomes[0]
	return o, res, outcomeError(o)
}

// readAt makes a read of the requested consistency possible on this node
// and returns the applied index the answer will reflect at least.
func readAt(ctx context.Context, node *raftnode.Node, c pb.Consistency) (uint64, error) {
	if c != pb.Consistency_CONSISTENCY_STALE {
		if err := node.LinearizableRead(ctx); err != nil {
			return 0, nodeError(node, err)
		}
	}
	return node.FSM().AppliedIndex(), nil
}

// GetItem reads an item's counters.
func (s *StoreServer) GetItem(ctx context.Context, req *pb.GetItemRequest) (*pb.GetItemResponse, error) {
	index, err := readAt(ctx, s.node, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	item, ok := s.node.FSM().Item(req.GetCampaignId(), req.GetItemId())
	if !ok {
		return nil, itemNotFound(req.GetCampaignId(), req.GetItemId())
	}
	return &pb.GetItemResponse{Item: itemToPB(item), Index: index}, nil
}

// GetCampaign reads a campaign and its items.
func (s *StoreServer) GetCampaign(ctx context.Context, req *pb.GetCampaignRequest) (*pb.GetCampaignResponse, error) {
	index, err := readAt(ctx, s.node, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	c, ok := s.node.FSM().Campaign(req.GetCampaignId())
	if !ok {
		return nil, campaignNotFound(req.GetCampaignId())
	}
	items := mapSlice(s.node.FSM().Items(c.ID), itemToPB)
	return &pb.GetCampaignResponse{Campaign: campaignToPB(c), Items: items, Index: index}, nil
}

func itemNotFound(campaignID, itemID string) error {
	return withInfo(codes.NotFound, fsm.ReasonItemNotFound.String(),
		fmt.Sprintf("no item %q in campaign %q", itemID, campaignID), nil)
}

func campaignNotFound(id string) error {
	return withInfo(codes.NotFound, fsm.ReasonCampaignNotFound.String(), fmt.Sprintf("no campaign %q", id), nil)
}

// ListClaims lists a user's claims.
func (s *StoreServer) ListClaims(ctx context.Context, req *pb.ListClaimsRequest) (*pb.ListClaimsResponse, error) {
	if err := pb.ValidateID("user id", req.GetUserId()); err != nil {
		return nil, invalidArgument(err)
	}
	index, err := readAt(ctx, s.node, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	claims := mapSlice(s.node.FSM().ClaimsByUser(req.GetUserId(), req.GetCampaignId()), claimToPB)
	return &pb.ListClaimsResponse{Claims: claims, Index: index}, nil
}
