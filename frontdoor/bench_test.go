package frontdoor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/frontdoor/token"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// soldOutDoor returns a door whose only item is sold out, with the given
// auth and rates, and the context a caller's call arrives with.
func soldOutDoor(b *testing.B, auth string, cfg FunnelConfig) (*Door, context.Context) {
	b.Helper()
	store := newFakeStore()
	var key *token.Key
	md := metadata.Pairs(mdUserID, "bench-user")
	if auth == AuthToken {
		key, _ = token.NewHMACKey([]byte(strings.Repeat("k", 32)))
		tok, _ := key.Issue("bench-user", time.Hour, time.Now())
		md = metadata.Pairs(mdAuthorization, "Bearer "+tok)
	}
	d, err := New(Config{ID: "f1", AuthMode: auth, TokenKey: key}, store, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.Close)
	d.catalog.updateCampaign(&pb.Campaign{
		Id: "c", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, State: pb.CampaignState_CAMPAIGN_STATE_OPEN,
	})
	d.catalog.updateItem(soldOutItem(), 1)
	d.catalog.synced.Store(true)
	d.applyConfig(cfg)
	return d, metadata.NewIncomingContext(context.Background(), md)
}

// BenchmarkSoldOutRejection is the whole funnel for a claim on a sold-out
// item, transport aside: what one core can turn away after a sell-out with
// no store traffic at all.
func BenchmarkSoldOutRejection(b *testing.B) {
	for _, bc := range []struct {
		name string
		auth string
		cfg  FunnelConfig
	}{
		{"insecure-header", AuthInsecureHeader, FunnelConfig{Version: 1}},
		{"token", AuthToken, FunnelConfig{Version: 1}},
		{"token+rate-limits", AuthToken, FunnelConfig{Version: 1, PerUserRate: 1e9, GlobalRate: 1e12}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, ctx := soldOutDoor(b, bc.auth, bc.cfg)
			srv := NewServer(d)
			req := claimReq("r1")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := srv.Claim(ctx, req); err != errSoldOut {
						b.Fatalf("got %v", err)
					}
				}
			})
			if n := d.coalescer.arrived.Load(); n != 0 {
				b.Fatalf("%d claims reached the coalescer", n)
			}
		})
	}
}

// BenchmarkSoldOutRejectionGRPC is the same through a real gRPC server and
// client on loopback, both in this process: the transport's cost dominates.
func BenchmarkSoldOutRejectionGRPC(b *testing.B) {
	d, _ := soldOutDoor(b, AuthInsecureHeader, FunnelConfig{Version: 1})
	fd := serveDoor(b, d)
	ctx := metadata.AppendToOutgoingContext(context.Background(), mdUserID, "bench-user")
	req := claimReq("r1")
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			if _, err := fd.Claim(ctx, req); reasonOf(err) != "SOLD_OUT" {
				b.Fatalf("got %v", err)
			}
		}
	})
}

// BenchmarkSoldOutRejectionClaimMany is the sell-out through a real gRPC
// server and client on loopback, 256 claims a ClaimMany call, as the
// client library sends them under load: ns/op is per claim.
func BenchmarkSoldOutRejectionClaimMany(b *testing.B) {
	d, _ := soldOutDoor(b, AuthInsecureHeader, FunnelConfig{Version: 1})
	fd := serveDoor(b, d)
	req := manyRequest(256)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(req.Claims) {
		resp, err := fd.ClaimMany(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if reasonOf(resp.GetOutcomes()[0].GetError().Err()) != "SOLD_OUT" {
			b.Fatalf("got %v", resp.GetOutcomes()[0])
		}
	}
}

// BenchmarkClaimManyGranted is the grant path of a ClaimMany call of 256
// new users' claims through a real gRPC server and client on loopback,
// behind a store that grants every claim at once (no Raft): what the front
// door itself costs per granted claim. ns/op is per claim.
func BenchmarkClaimManyGranted(b *testing.B) {
	d, err := New(Config{ID: "f1", AuthMode: AuthInsecureHeader}, grantingStore{newFakeStore()}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.Close)
	openCampaign(d, 1, 0, 0)
	fd := serveDoor(b, d)
	req := manyRequest(256)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(req.Claims) {
		for i, e := range req.Claims { // new users and request IDs, as in a sale
			e.InsecureUserId = fmt.Sprintf("u%d-%d", sent, i)
			e.Claim.RequestId = fmt.Sprintf("r%d-%d", sent, i)
		}
		resp, err := fd.ClaimMany(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if o := resp.GetOutcomes()[0]; o.GetClaim() == nil {
			b.Fatalf("refused: %v", o.GetError().Err())
		}
	}
}

// grantingStore grants every claim at once with a claim record of the
// size a real store's has.
type grantingStore struct{ *fakeStore }

func (grantingStore) ClaimBatch(_ context.Context, req *pb.ClaimBatchRequest) (*pb.ClaimBatchResponse, error) {
	now := timestamppb.Now()
	out := make([]*pb.ClaimOutcome, len(req.GetClaims()))
	for i, c := range req.GetClaims() {
		out[i] = &pb.ClaimOutcome{Claim: &pb.Claim{
			Id: uint64(i + 1), CampaignId: c.GetCampaignId(), ItemId: c.GetItemId(), UserId: c.GetUserId(),
			Quantity: c.GetQuantity(), State: pb.ClaimState_CLAIM_STATE_RESERVED, Created: now,
			Deadline: timestamppb.New(now.AsTime().Add(time.Minute)), RequestId: c.GetRequestId(),
		}}
	}
	return &pb.ClaimBatchResponse{Outcomes: out, Index: 1}, nil
}

func manyRequest(n int) *pb.ClaimManyRequest {
	req := &pb.ClaimManyRequest{}
	for i := range n {
		req.Claims = append(req.Claims, &pb.ClaimManyEntry{Claim: claimReq(fmt.Sprint("r", i)), InsecureUserId: fmt.Sprint("u", i)})
	}
	return req
}

// serveDoor serves d's FrontDoor service on a loopback port for the
// benchmark and returns a client of it.
func serveDoor(b *testing.B, d *Door) pb.FrontDoorClient {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterFrontDoorServer(srv, NewServer(d))
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return pb.NewFrontDoorClient(conn)
}
