package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/rpc/endpoint"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// The echo baseline: a server of the flashd.v1.FrontDoor service that
// grants every claim at once, doing nothing else. It speaks the same
// protocol with the same messages as a front door, answers with a claim
// record of the same size as a real grant, and runs on the same gRPC
// server setup (rpc/endpoint), so the same client library drives it: its
// figure is what one gRPC hop costs on this machine, the ceiling of any
// front door here.

// echoReservation is the deadline the echo's grants carry, like a real
// reservation's.
const echoReservation = time.Hour

// userHeader is the metadata a front door in insecure-header mode takes
// the user from (frontdoor.AuthInsecureHeader mode).
const userHeader = "x-user-id"

type echoServer struct {
	pb.UnimplementedFrontDoorServer
	next atomic.Uint64
}

// Claim grants at once.
func (s *echoServer) Claim(ctx context.Context, req *pb.FrontDoorClaimRequest) (*pb.FrontDoorClaimResponse, error) {
	var user string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(userHeader); len(v) > 0 {
			user = v[0]
		}
	}
	c := s.grant(req, user, time.Now())
	return &pb.FrontDoorClaimResponse{ClaimId: c.Id, State: c.State, Deadline: c.Deadline, RequestId: c.RequestId, Claim: c}, nil
}

// ClaimMany grants every claim of the call at once, as a front door's
// ClaimMany answers: one outcome per claim.
func (s *echoServer) ClaimMany(_ context.Context, req *pb.ClaimManyRequest) (*pb.ClaimManyResponse, error) {
	now := time.Now()
	out := make([]*pb.ClaimManyOutcome, len(req.GetClaims()))
	for i, e := range req.GetClaims() {
		out[i] = &pb.ClaimManyOutcome{Claim: s.grant(e.GetClaim(), e.GetInsecureUserId(), now)}
	}
	return &pb.ClaimManyResponse{Outcomes: out}, nil
}

// grant is the claim record a real grant of req would carry.
func (s *echoServer) grant(req *pb.FrontDoorClaimRequest, user string, now time.Time) *pb.Claim {
	return &pb.Claim{
		Id: s.next.Add(1), CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(), UserId: user,
		Quantity: max(req.GetQuantity(), 1), State: pb.ClaimState_CLAIM_STATE_RESERVED,
		Created: timestamppb.New(now), Deadline: timestamppb.New(now.Add(echoReservation)), RequestId: req.GetRequestId(),
	}
}

// ServeEcho serves the echo baseline on grpcAddr (and /metrics and
// /debug/pprof on httpAddr) until ctx ends.
func ServeEcho(ctx context.Context, grpcAddr, httpAddr string) error {
	// gRPC's own defaults: the baseline measures what gRPC costs.
	e, err := endpoint.New(grpcAddr, httpAddr, endpoint.Limits{})
	if err != nil {
		return err
	}
	pb.RegisterFrontDoorServer(e.GRPC, &echoServer{})
	e.Health.SetServingStatus(pb.FrontDoor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	e.Serve()
	defer e.Stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Done():
		return fmt.Errorf("echo server stopped: %w", err)
	}
}

// frontDoorTarget claims through the client library: from flashd's front
// doors or the echo servers.
type frontDoorTarget struct {
	c        *client.Client
	campaign string
}

func (t *frontDoorTarget) Claim(ctx context.Context, r Request) error {
	_, err := t.c.Claim(ctx, t.campaign, r.Item, client.AsUser(r.User))
	return err
}
