package client

import (
	"context"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// The Admin service. Mutations go to the leader and are retried under the
// policy in DESIGN.md; a mutation whose request ID is empty gets a new one
// (set in the request, so the caller can read it back) before the first
// attempt, and every retry sends that same ID.

// CreateCampaign creates a campaign.
func (s *Store) CreateCampaign(ctx context.Context, req *flashdpb.CreateCampaignRequest) (*flashdpb.Campaign, error) {
	ensureRequestID(&req.RequestId)
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.CreateCampaign)
}

// UpdateCampaign changes a campaign's state or times.
func (s *Store) UpdateCampaign(ctx context.Context, req *flashdpb.UpdateCampaignRequest) (*flashdpb.Campaign, error) {
	ensureRequestID(&req.RequestId)
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.UpdateCampaign)
}

// ListCampaigns lists every campaign; a stale read may be answered by any node.
func (s *Store) ListCampaigns(ctx context.Context, req *flashdpb.ListCampaignsRequest) (*flashdpb.ListCampaignsResponse, error) {
	return adminCall(ctx, s, readRoute(req.GetConsistency()), req, flashdpb.AdminClient.ListCampaigns)
}

// AddItem adds an item with its stock to a campaign.
func (s *Store) AddItem(ctx context.Context, req *flashdpb.AddItemRequest) (*flashdpb.Item, error) {
	ensureRequestID(&req.RequestId)
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.AddItem)
}

// ListItems lists a campaign's items; a stale read may be answered by any node.
func (s *Store) ListItems(ctx context.Context, req *flashdpb.ListItemsRequest) (*flashdpb.ListItemsResponse, error) {
	return adminCall(ctx, s, readRoute(req.GetConsistency()), req, flashdpb.AdminClient.ListItems)
}

// AdjustStock adds stock to an item (delta > 0) or removes available stock
// from it (delta < 0). It is not idempotent across request IDs.
func (s *Store) AdjustStock(ctx context.Context, req *flashdpb.AdjustStockRequest) (*flashdpb.Item, error) {
	ensureRequestID(&req.RequestId)
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.AdjustStock)
}

// SetFrontDoorConfig replaces the configuration the front doors watch.
func (s *Store) SetFrontDoorConfig(ctx context.Context, req *flashdpb.SetFrontDoorConfigRequest) (*flashdpb.FrontDoorConfig, error) {
	ensureRequestID(&req.RequestId)
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.SetFrontDoorConfig)
}

// ClusterStatus returns every member's view of the cluster. Any node may
// answer: it asks the others.
func (s *Store) ClusterStatus(ctx context.Context, req *flashdpb.ClusterStatusRequest) (*flashdpb.ClusterStatusResponse, error) {
	return adminCall(ctx, s, routeAny, req, flashdpb.AdminClient.ClusterStatus)
}

// NodeStatus asks the node at addr (a gRPC host:port, one of the endpoints
// or not) for its own status, once: a node that does not answer is the
// answer.
func (s *Store) NodeStatus(ctx context.Context, addr string, req *flashdpb.NodeStatusRequest) (*flashdpb.NodeStatusResponse, error) {
	s.mu.Lock()
	closed, ep := s.closed, s.find(addr)
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if ep == nil {
		var err error
		if ep, err = dial(addr, &s.opts); err != nil {
			return nil, err
		}
		defer ep.conn.Close()
	}
	ctx, cancel := bounded(ctx, s.opts.callTimeout)
	defer cancel()
	resp, err := ep.admin.NodeStatus(ctx, req)
	if err != nil {
		return nil, newError(err)
	}
	return resp, nil
}

// Join adds a node to the cluster (the leader changes the configuration).
func (s *Store) Join(ctx context.Context, req *flashdpb.JoinRequest) (*flashdpb.JoinResponse, error) {
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.Join)
}

// Remove removes a node from the cluster.
func (s *Store) Remove(ctx context.Context, req *flashdpb.RemoveRequest) (*flashdpb.RemoveResponse, error) {
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.Remove)
}

// TransferLeadership asks the leader to hand leadership to a node, to any
// voter in a region, or (neither given) to any voter. The client believes
// the new leader's address only once a call hints at it or succeeds there.
func (s *Store) TransferLeadership(ctx context.Context, req *flashdpb.TransferLeadershipRequest) (*flashdpb.TransferLeadershipResponse, error) {
	resp, err := adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.TransferLeadership)
	if err == nil {
		s.forgetLeader()
	}
	return resp, err
}

// Snapshot makes the leader take a snapshot now.
func (s *Store) Snapshot(ctx context.Context, req *flashdpb.SnapshotRequest) (*flashdpb.SnapshotResponse, error) {
	return adminCall(ctx, s, routeLeader, req, flashdpb.AdminClient.Snapshot)
}
