package client_test

import (
	"context"
	"net"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// exampleFrontDoor stands in for a front door in insecure-header mode in
// the examples: it grants one unit per user until its stock is gone.
type exampleFrontDoor struct {
	flashdpb.UnimplementedFrontDoorServer
	mu      sync.Mutex
	stock   int
	claimed map[string]*flashdpb.Claim // by user
	byID    map[string]*flashdpb.Claim // by request ID
	nextID  uint64
}

// startExampleFrontDoor serves a stand-in front door holding stock units
// on a loopback port and returns its address and a function that stops it.
func startExampleFrontDoor(stock int) (string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	flashdpb.RegisterFrontDoorServer(srv, &exampleFrontDoor{stock: stock, claimed: map[string]*flashdpb.Claim{}, byID: map[string]*flashdpb.Claim{}})
	h := health.NewServer()
	h.SetServingStatus(flashdpb.FrontDoor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	return lis.Addr().String(), func() { srv.Stop(); <-done }
}

func (f *exampleFrontDoor) Claim(ctx context.Context, req *flashdpb.FrontDoorClaimRequest) (*flashdpb.FrontDoorClaimResponse, error) {
	users := metadata.ValueFromIncomingContext(ctx, "x-user-id")
	if len(users) == 0 {
		return nil, refuse(codes.Unauthenticated, "MISSING_TOKEN", "missing credentials")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.byID[req.GetRequestId()]; c != nil {
		return &flashdpb.FrontDoorClaimResponse{ClaimId: c.Id, RequestId: c.RequestId, Claim: c}, nil
	}
	switch {
	case f.claimed[users[0]] != nil:
		return nil, refuse(codes.FailedPrecondition, "LIMIT_REACHED", "per-user limit reached")
	case f.stock == 0:
		return nil, refuse(codes.FailedPrecondition, "SOLD_OUT", "sold out")
	}
	f.stock--
	f.nextID++
	c := &flashdpb.Claim{
		Id: f.nextID, CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(), UserId: users[0],
		Quantity: 1, State: flashdpb.ClaimState_CLAIM_STATE_RESERVED, RequestId: req.GetRequestId(),
	}
	f.claimed[users[0]], f.byID[req.GetRequestId()] = c, c
	return &flashdpb.FrontDoorClaimResponse{ClaimId: c.Id, State: c.State, RequestId: c.RequestId, Claim: c}, nil
}

func refuse(code codes.Code, reason, msg string) error {
	st, _ := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "flashd"})
	return st.Err()
}
