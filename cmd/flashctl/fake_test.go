package main

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// fakeCluster is one in-process gRPC server with canned answers for every
// RPC flashctl makes. It records the last request of each method, and
// answers a method with the error a test sets.
type fakeCluster struct {
	pb.UnimplementedAdminServer
	pb.UnimplementedStoreServer

	addr string

	mu       sync.Mutex
	requests map[string]proto.Message
	errs     map[string]error
}

func startFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &fakeCluster{addr: lis.Addr().String(), requests: map[string]proto.Message{}, errs: map[string]error{}}
	srv := grpc.NewServer()
	pb.RegisterAdminServer(srv, f)
	pb.RegisterStoreServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return f
}

func (f *fakeCluster) fail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = err
}

func (f *fakeCluster) request(method string) proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[method]
}

func (f *fakeCluster) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeCluster) record(method string, req proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests[method] = req
	return f.errs[method]
}

// testStart is the start time of the canned campaigns and claims.
func testStart() time.Time { return time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC) }

func testCampaign(id string) *pb.Campaign {
	return &pb.Campaign{
		Id: id, Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "Spring sale",
		Start: timestamppb.New(testStart()), PerUserLimit: 1, WaveCount: 1,
		WaveInterval: durationpb.New(0), ReservationTtl: durationpb.New(5 * time.Minute),
		State: pb.CampaignState_CAMPAIGN_STATE_OPEN,
	}
}

func testItem(campaign, id string) *pb.Item {
	return &pb.Item{CampaignId: campaign, Id: id, Total: 100, Available: 97, Reserved: 2, Sold: 1, PerUserLimit: 1}
}

func testClaim(id uint64, state pb.ClaimState, requestID string) *pb.Claim {
	return &pb.Claim{
		Id: id, CampaignId: "spring", ItemId: "lantern", UserId: "alice", Quantity: 1, State: state,
		Created: timestamppb.New(testStart()), Deadline: timestamppb.New(testStart().Add(5 * time.Minute)), RequestId: requestID,
	}
}

func (f *fakeCluster) CreateCampaign(_ context.Context, req *pb.CreateCampaignRequest) (*pb.Campaign, error) {
	if err := f.record("CreateCampaign", req); err != nil {
		return nil, err
	}
	c := proto.Clone(req.GetCampaign()).(*pb.Campaign)
	c.State = pb.CampaignState_CAMPAIGN_STATE_DRAFT
	return c, nil
}

func (f *fakeCluster) UpdateCampaign(_ context.Context, req *pb.UpdateCampaignRequest) (*pb.Campaign, error) {
	if err := f.record("UpdateCampaign", req); err != nil {
		return nil, err
	}
	c := testCampaign(req.GetCampaignId())
	c.State = req.GetState()
	return c, nil
}

func (f *fakeCluster) ListCampaigns(_ context.Context, req *pb.ListCampaignsRequest) (*pb.ListCampaignsResponse, error) {
	if err := f.record("ListCampaigns", req); err != nil {
		return nil, err
	}
	return &pb.ListCampaignsResponse{Campaigns: []*pb.Campaign{testCampaign("spring"), testCampaign("autumn")}, Index: 42}, nil
}

func (f *fakeCluster) AddItem(_ context.Context, req *pb.AddItemRequest) (*pb.Item, error) {
	if err := f.record("AddItem", req); err != nil {
		return nil, err
	}
	return &pb.Item{CampaignId: req.GetCampaignId(), Id: req.GetItemId(), Total: req.GetStock(), Available: req.GetStock(), PerUserLimit: req.GetPerUserLimit()}, nil
}

func (f *fakeCluster) ListItems(_ context.Context, req *pb.ListItemsRequest) (*pb.ListItemsResponse, error) {
	if err := f.record("ListItems", req); err != nil {
		return nil, err
	}
	return &pb.ListItemsResponse{Items: []*pb.Item{testItem(req.GetCampaignId(), "lantern"), testItem(req.GetCampaignId(), "kite")}, Index: 42}, nil
}

func (f *fakeCluster) AdjustStock(_ context.Context, req *pb.AdjustStockRequest) (*pb.Item, error) {
	if err := f.record("AdjustStock", req); err != nil {
		return nil, err
	}
	return testItem(req.GetCampaignId(), req.GetItemId()), nil
}

func (f *fakeCluster) ClusterStatus(_ context.Context, req *pb.ClusterStatusRequest) (*pb.ClusterStatusResponse, error) {
	if err := f.record("ClusterStatus", req); err != nil {
		return nil, err
	}
	status := func(id, state string, term uint64) *pb.NodeStatusResponse {
		s := &pb.NodeStatusResponse{Id: id, State: state, Term: term, CommitIndex: 120, AppliedIndex: 119,
			Digest: "9f86d081884c7d659a2feaa0c55ad015", Claims: 17, LeaderId: "n1"}
		if state != "Leader" {
			s.LastContact = timestamppb.New(time.Now().Add(-40 * time.Millisecond))
		}
		return s
	}
	return &pb.ClusterStatusResponse{
		LeaderId: "n1", LeaderRegion: "east", LeaderGrpcAddr: "127.0.0.1:7001",
		Members: []*pb.Member{
			{Id: "n1", Region: "east", GrpcAddr: "127.0.0.1:7001", Voter: true, Leader: true, Status: status("n1", "Leader", 3)},
			{Id: "n2", Region: "west", GrpcAddr: "127.0.0.1:7002", Voter: true, Status: status("n2", "Follower", 3)},
			{Id: "n3", Region: "north", GrpcAddr: "127.0.0.1:7003", Voter: false, Error: "connection refused"},
		},
	}, nil
}

func (f *fakeCluster) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	return &pb.JoinResponse{}, f.record("Join", req)
}

func (f *fakeCluster) Remove(_ context.Context, req *pb.RemoveRequest) (*pb.RemoveResponse, error) {
	return &pb.RemoveResponse{}, f.record("Remove", req)
}

func (f *fakeCluster) TransferLeadership(_ context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	if err := f.record("TransferLeadership", req); err != nil {
		return nil, err
	}
	return &pb.TransferLeadershipResponse{LeaderId: "n2"}, nil
}

func (f *fakeCluster) Snapshot(_ context.Context, req *pb.SnapshotRequest) (*pb.SnapshotResponse, error) {
	if err := f.record("Snapshot", req); err != nil {
		return nil, err
	}
	return &pb.SnapshotResponse{Index: 120}, nil
}

func (f *fakeCluster) ClaimBatch(_ context.Context, req *pb.ClaimBatchRequest) (*pb.ClaimBatchResponse, error) {
	if err := f.record("ClaimBatch", req); err != nil {
		return nil, err
	}
	resp := &pb.ClaimBatchResponse{Index: 121}
	for _, c := range req.GetClaims() {
		if c.GetItemId() == "gone" {
			resp.Outcomes = append(resp.Outcomes, &pb.ClaimOutcome{Reason: pb.Reason_REASON_SOLD_OUT, Message: "item gone is sold out"})
			continue
		}
		claim := testClaim(9, pb.ClaimState_CLAIM_STATE_RESERVED, c.GetRequestId())
		claim.CampaignId, claim.ItemId, claim.UserId, claim.Quantity = c.GetCampaignId(), c.GetItemId(), c.GetUserId(), c.GetQuantity()
		resp.Outcomes = append(resp.Outcomes, &pb.ClaimOutcome{Claim: claim})
	}
	return resp, nil
}

func (f *fakeCluster) Settle(_ context.Context, req *pb.SettleRequest) (*pb.SettleResponse, error) {
	if err := f.record("Settle", req); err != nil {
		return nil, err
	}
	return &pb.SettleResponse{Claim: testClaim(req.GetClaimId(), pb.ClaimState_CLAIM_STATE_SETTLED, req.GetRequestId())}, nil
}

func (f *fakeCluster) Release(_ context.Context, req *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	if err := f.record("Release", req); err != nil {
		return nil, err
	}
	return &pb.ReleaseResponse{Claim: testClaim(req.GetClaimId(), pb.ClaimState_CLAIM_STATE_RELEASED, req.GetRequestId())}, nil
}

func (f *fakeCluster) GetItem(_ context.Context, req *pb.GetItemRequest) (*pb.GetItemResponse, error) {
	if err := f.record("GetItem", req); err != nil {
		return nil, err
	}
	return &pb.GetItemResponse{Item: testItem(req.GetCampaignId(), req.GetItemId()), Index: 42}, nil
}

func (f *fakeCluster) GetCampaign(_ context.Context, req *pb.GetCampaignRequest) (*pb.GetCampaignResponse, error) {
	if err := f.record("GetCampaign", req); err != nil {
		return nil, err
	}
	return &pb.GetCampaignResponse{Campaign: testCampaign(req.GetCampaignId()), Items: []*pb.Item{testItem(req.GetCampaignId(), "lantern")}, Index: 42}, nil
}

func (f *fakeCluster) ListClaims(_ context.Context, req *pb.ListClaimsRequest) (*pb.ListClaimsResponse, error) {
	if err := f.record("ListClaims", req); err != nil {
		return nil, err
	}
	return &pb.ListClaimsResponse{Claims: []*pb.Claim{testClaim(9, pb.ClaimState_CLAIM_STATE_RESERVED, "r1")}, Index: 42}, nil
}
