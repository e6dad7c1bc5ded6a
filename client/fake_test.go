package client

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// fakeNode is an in-process gRPC server on a loopback port whose answers a
// test scripts, and which records every call it gets.
type fakeNode struct {
	flashdpb.UnimplementedStoreServer
	flashdpb.UnimplementedAdminServer

	addr string
	srv  *grpc.Server

	mu     sync.Mutex
	calls  []fakeCall
	answer func(ctx context.Context, c fakeCall) error // nil: success
}

type fakeCall struct {
	method    string
	requestID string
	at        time.Time
}

// startFakeNode starts a node that answers every call with success until
// the test sets its answer.
func startFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	n := &fakeNode{addr: lis.Addr().String(), srv: grpc.NewServer()}
	flashdpb.RegisterStoreServer(n.srv, n)
	flashdpb.RegisterAdminServer(n.srv, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		n.srv.Stop()
		<-done
	})
	return n
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func (n *fakeNode) script(answer func(ctx context.Context, c fakeCall) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.answer = answer
}

// always makes the node answer every call with err.
func (n *fakeNode) always(err error) {
	n.script(func(context.Context, fakeCall) error { return err })
}

func (n *fakeNode) serve(ctx context.Context, method, requestID string) error {
	n.mu.Lock()
	c := fakeCall{method: method, requestID: requestID, at: time.Now()}
	n.calls = append(n.calls, c)
	answer := n.answer
	n.mu.Unlock()
	if answer == nil {
		return nil
	}
	return answer(ctx, c)
}

func (n *fakeNode) recorded() []fakeCall {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]fakeCall(nil), n.calls...)
}

func (n *fakeNode) ClaimBatch(ctx context.Context, req *flashdpb.ClaimBatchRequest) (*flashdpb.ClaimBatchResponse, error) {
	first := req.GetClaims()[0]
	if err := n.serve(ctx, "ClaimBatch", first.GetRequestId()); err != nil {
		return nil, err
	}
	resp := &flashdpb.ClaimBatchResponse{Index: 7}
	for i, c := range req.GetClaims() {
		if c.GetItemId() == "gone" {
			resp.Outcomes = append(resp.Outcomes, &flashdpb.ClaimOutcome{
				Reason: flashdpb.Reason_REASON_SOLD_OUT, Message: "item gone has no stock left",
			})
			continue
		}
		resp.Outcomes = append(resp.Outcomes, &flashdpb.ClaimOutcome{Claim: &flashdpb.Claim{
			Id: uint64(i + 1), CampaignId: c.GetCampaignId(), ItemId: c.GetItemId(), UserId: c.GetUserId(),
			Quantity: c.GetQuantity(), State: flashdpb.ClaimState_CLAIM_STATE_RESERVED, RequestId: c.GetRequestId(),
		}})
	}
	return resp, nil
}

func (n *fakeNode) Settle(ctx context.Context, req *flashdpb.SettleRequest) (*flashdpb.SettleResponse, error) {
	if err := n.serve(ctx, "Settle", req.GetRequestId()); err != nil {
		return nil, err
	}
	return &flashdpb.SettleResponse{Claim: &flashdpb.Claim{Id: req.GetClaimId(), State: flashdpb.ClaimState_CLAIM_STATE_SETTLED}}, nil
}

func (n *fakeNode) GetItem(ctx context.Context, req *flashdpb.GetItemRequest) (*flashdpb.GetItemResponse, error) {
	if err := n.serve(ctx, "GetItem", ""); err != nil {
		return nil, err
	}
	return &flashdpb.GetItemResponse{Item: &flashdpb.Item{CampaignId: req.GetCampaignId(), Id: req.GetItemId(), Total: 10, Available: 10}}, nil
}

func (n *fakeNode) AdjustStock(ctx context.Context, req *flashdpb.AdjustStockRequest) (*flashdpb.Item, error) {
	if err := n.serve(ctx, "AdjustStock", req.GetRequestId()); err != nil {
		return nil, err
	}
	return &flashdpb.Item{CampaignId: req.GetCampaignId(), Id: req.GetItemId(), Total: uint64(req.GetDelta())}, nil
}

func (n *fakeNode) ClusterStatus(ctx context.Context, _ *flashdpb.ClusterStatusRequest) (*flashdpb.ClusterStatusResponse, error) {
	if err := n.serve(ctx, "ClusterStatus", ""); err != nil {
		return nil, err
	}
	return &flashdpb.ClusterStatusResponse{LeaderId: "n1"}, nil
}

func (n *fakeNode) NodeStatus(ctx context.Context, _ *flashdpb.NodeStatusRequest) (*flashdpb.NodeStatusResponse, error) {
	if err := n.serve(ctx, "NodeStatus", ""); err != nil {
		return nil, err
	}
	return &flashdpb.NodeStatusResponse{Id: n.addr, State: "Follower"}, nil
}

// Statuses as the servers send them (DESIGN.md section 7).

func notLeader(leaderID, leaderAddr string) error {
	return withInfo(codes.Unavailable, "node is not the leader", "NOT_LEADER",
		map[string]string{"leader_id": leaderID, "leader_addr": leaderAddr})
}

func refusal(code codes.Code, reason, msg string) error {
	return withInfo(code, msg, reason, nil)
}

func withInfo(code codes.Code, msg, reason string, meta map[string]string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "flashd", Metadata: meta})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func overloaded(retryAfter time.Duration) error {
	return retryLater(codes.ResourceExhausted, "OVERLOADED", retryAfter)
}

func retryLater(code codes.Code, reason string, retryAfter time.Duration) error {
	st, err := status.New(code, "come back later").WithDetails(
		&errdetails.ErrorInfo{Reason: reason, Domain: "flashd"},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)},
	)
	if err != nil {
		panic(err)
	}
	return st.Err()
}
