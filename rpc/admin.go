package rpc

import (
	"context"
	"fmt"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/flashd/flashd/raftnode"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// AdminServer serves flashd.v1.Admin on a store node.
type AdminServer struct {
	pb.UnimplementedAdminServer
	node       *raftnode.Node
	peers      *peerDialer
	frontDoors *frontDoorRegistry
}

// NewAdminServer returns the Admin service of node.
func NewAdminServer(node *raftnode.Node, doors *frontDoorRegistry) *AdminServer {
	return &AdminServer{node: node, peers: &peerDialer{}, frontDoors: doors}
}

// CreateCampaign creates a campaign in state DRAFT.
func (s *AdminServer) CreateCampaign(ctx context.Context, req *pb.CreateCampaignRequest) (*pb.Campaign, error) {
	c := req.GetCampaign()
	if err := pb.ValidateID("campaign id", c.GetId()); err != nil {
		return nil, invalidArgument(err)
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN, RequestId: req.GetRequestId(),
		CreateCampaign: &fsmpb.CreateCampaign{
			CampaignId: c.GetId(), Kind: fsmpb.CampaignKind(c.GetKind()), Name: c.GetName(),
			StartUnixNano: unixNano(c.GetStart()), EndUnixNano: unixNano(c.GetEnd()),
			PerUserLimit: c.GetPerUserLimit(), WaveCount: c.GetWaveCount(),
			WaveIntervalNanos:   c.GetWaveInterval().AsDuration().Nanoseconds(),
			ReservationTtlNanos: c.GetReservationTtl().AsDuration().Nanoseconds(),
		},
	})
	if err != nil {
		return nil, err
	}
	return s.campaignResult(res, c.GetId())
}

// UpdateCampaign opens or closes a campaign or moves its times.
func (s *AdminServer) UpdateCampaign(ctx context.Context, req *pb.UpdateCampaignRequest) (*pb.Campaign, error) {
	up := &fsmpb.UpdateCampaign{CampaignId: req.GetCampaignId()}
	if req.State != nil {
		st := fsmpb.CampaignState(req.GetState())
		up.State = &st
	}
	if req.GetStart() != nil {
		v := unixNano(req.GetStart())
		up.StartUnixNano = &v
	}
	if req.GetEnd() != nil {
		v := unixNano(req.GetEnd())
		up.EndUnixNano = &v
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN, RequestId: req.GetRequestId(), UpdateCampaign: up,
	})
	if err != nil {
		return nil, err
	}
	return s.campaignResult(res, req.GetCampaignId())
}

// campaignResult prefers the view the command returned, else reads the
// applied state (an idempotent retry may carry no view).
func (s *AdminServer) campaignResult(res *fsm.Result, id string) (*pb.Campaign, error) {
	if res.Campaign != nil {
		return campaignToPB(*res.Campaign), nil
	}
	c, ok := s.node.FSM().Campaign(id)
	if !ok {
		return nil, campaignNotFound(id)
	}
	return campaignToPB(c), nil
}

func (s *AdminServer) itemResult(res *fsm.Result, campaignID, itemID string) (*pb.Item, error) {
	if res.Item != nil {
		return itemToPB(*res.Item), nil
	}
	item, ok := s.node.FSM().Item(campaignID, itemID)
	if !ok {
		return nil, itemNotFound(campaignID, itemID)
	}
	return itemToPB(item), nil
}

// ListCampaigns lists every campaign.
func (s *AdminServer) ListCampaigns(ctx context.Context, req *pb.ListCampaignsRequest) (*pb.ListCampaignsResponse, error) {
	index, err := readAt(ctx, s.node, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.ListCampaignsResponse{Campaigns: mapSlice(s.node.FSM().Campaigns(), campaignToPB), Index: index}, nil
}

// AddItem adds an item with its stock to a campaign.
func (s *AdminServer) AddItem(ctx context.Context, req *pb.AddItemRequest) (*pb.Item, error) {
	if err := validateItemRef(req.GetCampaignId(), req.GetItemId()); err != nil {
		return nil, err
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM, RequestId: req.GetRequestId(),
		AddItem: &fsmpb.AddItem{CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(), Stock: req.GetStock(), PerUserLimit: req.GetPerUserLimit()},
	})
	if err != nil {
		return nil, err
	}
	return s.itemResult(res, req.GetCampaignId(), req.GetItemId())
}

// ListItems lists a campaign's items.
func (s *AdminServer) ListItems(ctx context.Context, req *pb.ListItemsRequest) (*pb.ListItemsResponse, error) {
	index, err := readAt(ctx, s.node, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.ListItemsResponse{Items: mapSlice(s.node.FSM().Items(req.GetCampaignId()), itemToPB), Index: index}, nil
}

// AdjustStock adds stock, or removes no more than is available.
func (s *AdminServer) AdjustStock(ctx context.Context, req *pb.AdjustStockRequest) (*pb.Item, error) {
	if err := validateItemRef(req.GetCampaignId(), req.GetItemId()); err != nil {
		return nil, err
	}
	if req.GetDelta() == 0 {
		return nil, invalidArgument(fmt.Errorf("stock change must not be zero"))
	}
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_ADJUST_STOCK, RequestId: req.GetRequestId(),
		AdjustStock: &fsmpb.AdjustStock{CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(), Delta: req.GetDelta()},
	})
	if err != nil {
		return nil, err
	}
	return s.itemResult(res, req.GetCampaignId(), req.GetItemId())
}

func validateItemRef(campaignID, itemID string) error {
	if err := pb.ValidateID("campaign id", campaignID); err != nil {
		return invalidArgument(err)
	}
	if err := pb.ValidateID("item id", itemID); err != nil {
		return invalidArgument(err)
	}
	return nil
}

// SetFrontDoorConfig replaces the replicated funnel configuration.
func (s *AdminServer) SetFrontDoorConfig(ctx context.Context, req *pb.SetFrontDoorConfigRequest) (*pb.FrontDoorConfig, error) {
	c := req.GetConfig()
	_, res, err := proposeOne(ctx, s.node, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_SET_FRONT_DOOR_CONFIG, RequestId: req.GetRequestId(),
		SetFrontDoorConfig: &fsmpb.SetFrontDoorConfig{Config: &fsmpb.FrontDoorConfig{
			GlobalRate: c.GetGlobalRate(), PerUserRate: c.GetPerUserRate(), PerIpRate: c.GetPerIpRate(),
			DegradeLevel: c.GetDegradeLevel(), DropFraction: c.GetDropFraction(), DegradeAuto: c.GetDegradeAuto(),
		}},
	})
	if err != nil {
		return nil, err
	}
	return configToPB(*res.Config), nil
}

// Join adds a node; sent to a follower it answers NOT_LEADER with the hint.
func (s *AdminServer) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	if err := pb.ValidateID("node id", req.GetId()); err != nil {
		return nil, invalidArgument(err)
	}
	if req.GetRaftAddr() == "" || req.GetGrpcAddr() == "" {
		return nil, invalidArgument(fmt.Errorf("raft and grpc addresses are required"))
	}
	err := s.node.Join(ctx, raftnode.NodeInfo{
		ID: req.GetId(), RaftAddr: req.GetRaftAddr(), GRPCAddr: req.GetGrpcAddr(),
		HTTPAddr: req.GetHttpAddr(), Region: req.GetRegion(), NonVoter: req.GetNonVoter(),
	})
	if err != nil {
		return nil, nodeError(s.node, err)
	}
	return &pb.JoinResponse{}, nil
}

// Remove takes a node out of the cluster.
func (s *AdminServer) Remove(ctx context.Context, req *pb.RemoveRequest) (*pb.RemoveResponse, error) {
	if err := s.node.Remove(ctx, req.GetId()); err != nil {
		return nil, nodeError(s.node, err)
	}
	return &pb.RemoveResponse{}, nil
}

// TransferLeadership moves leadership to a named node or region.
func (s *AdminServer) TransferLeadership(ctx context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	id, err := s.node.TransferLeadership(ctx, req.GetToId(), req.GetToRegion())
	if err != nil {
		return nil, nodeError(s.node, err)
	}
	return &pb.TransferLeadershipResponse{LeaderId: id}, nil
}

// Snapshot takes a snapshot on this node now.
func (s *AdminServer) Snapshot(ctx context.Context, _ *pb.SnapshotRequest) (*pb.SnapshotResponse, error) {
	index, err := s.node.Snapshot()
	if err != nil {
		return nil, nodeError(s.node, err)
	}
	return &pb.SnapshotResponse{Index: index}, nil
}
