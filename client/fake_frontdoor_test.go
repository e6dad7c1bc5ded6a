package client

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// fakeDoors are in-process FrontDoor servers on loopback ports sharing one
// script and one record of calls, in the order they came, whichever door
// took them.
type fakeDoors struct {
	doors []*fakeDoor

	mu     sync.Mutex
	calls  []doorCall
	answer func(ctx context.Context, c doorCall) error // nil: grant
	header metadata.MD                                 // sent with every answer

	// batching: the doors serve ClaimMany, each claim of it as a Claim
	// call of its own (with the entry's credentials as its metadata);
	// otherwise ClaimMany is UNIMPLEMENTED, as on an older front door.
	batching  bool
	manyCalls int // ClaimMany calls received, served or not
	manySizes []int
}

type fakeDoor struct {
	flashdpb.UnimplementedFrontDoorServer
	group  *fakeDoors
	index  int
	addr   string
	health *health.Server
}

// doorCall is one call a fake front door received.
type doorCall struct {
	door      int // index in fakeDoors.doors
	method    string
	requestID string
	retry     bool
	md        metadata.MD
	at        time.Time
	n         int // 1 for the first call to any door
}

func startFakeDoors(t *testing.T, n int) *fakeDoors {
	t.Helper()
	g := &fakeDoors{}
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		d := &fakeDoor{group: g, index: i, addr: lis.Addr().String(), health: health.NewServer()}
		srv := grpc.NewServer()
		flashdpb.RegisterFrontDoorServer(srv, d)
		healthpb.RegisterHealthServer(srv, d.health)
		d.setServing(true)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(lis)
		}()
		t.Cleanup(func() {
			srv.Stop()
			<-done
		})
		g.doors = append(g.doors, d)
	}
	return g
}

func (g *fakeDoors) addrs() []string {
	var out []string
	for _, d := range g.doors {
		out = append(out, d.addr)
	}
	return out
}

func (g *fakeDoors) script(answer func(ctx context.Context, c doorCall) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answer = answer
}

// failFirst makes the first n calls fail with err, the later ones succeed.
func (g *fakeDoors) failFirst(n int, err error) {
	g.script(func(_ context.Context, c doorCall) error {
		if c.n <= n {
			return err
		}
		return nil
	})
}

func (g *fakeDoors) setHeader(md metadata.MD) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.header = md
}

func (g *fakeDoors) recorded() []doorCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]doorCall(nil), g.calls...)
}

func (d *fakeDoor) setServing(serving bool) {
	s := healthpb.HealthCheckResponse_SERVING
	if !serving {
		s = healthpb.HealthCheckResponse_NOT_SERVING
	}
	d.health.SetServingStatus(frontDoorService, s)
}

func (d *fakeDoor) serve(ctx context.Context, method, requestID string, retry bool) error {
	md, _ := metadata.FromIncomingContext(ctx)
	g := d.group
	g.mu.Lock()
	c := doorCall{door: d.index, method: method, requestID: requestID, retry: retry, md: md, at: time.Now(), n: len(g.calls) + 1}
	g.calls = append(g.calls, c)
	answer, header := g.answer, g.header
	g.mu.Unlock()
	if header != nil {
		_ = grpc.SetHeader(ctx, header)
	}
	if answer == nil {
		return nil
	}
	return answer(ctx, c)
}

func (d *fakeDoor) Claim(ctx context.Context, req *flashdpb.FrontDoorClaimRequest) (*flashdpb.FrontDoorClaimResponse, error) {
	if err := d.serve(ctx, "Claim", req.GetRequestId(), req.GetRetry()); err != nil {
		return nil, err
	}
	users := metadata.ValueFromIncomingContext(ctx, mdUserID)
	claim := &flashdpb.Claim{
		Id: 42, CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(), Quantity: max(req.GetQuantity(), 1),
		State: flashdpb.ClaimState_CLAIM_STATE_RESERVED, RequestId: req.GetRequestId(),
	}
	if len(users) > 0 {
		claim.UserId = users[0]
	}
	return &flashdpb.FrontDoorClaimResponse{ClaimId: 42, State: claim.State, RequestId: claim.RequestId, Claim: claim}, nil
}

func (d *fakeDoor) DrawCard(ctx context.Context, req *flashdpb.FrontDoorDrawCardRequest) (*flashdpb.DrawCardResponse, error) {
	if err := d.serve(ctx, "DrawCard", req.GetRequestId(), req.GetRetry()); err != nil {
		return nil, err
	}
	return &flashdpb.DrawCardResponse{CardType: "fu", RequestId: req.GetRequestId()}, nil
}

func (d *fakeDoor) RedeemSet(ctx context.Context, req *flashdpb.FrontDoorRedeemSetRequest) (*flashdpb.RedeemSetResponse, error) {
	if err := d.serve(ctx, "RedeemSet", req.GetRequestId(), req.GetRetry()); err != nil {
		return nil, err
	}
	return &flashdpb.RedeemSetResponse{Reward: 1, RequestId: req.GetRequestId()}, nil
}

func (d *fakeDoor) ClaimMany(ctx context.Context, req *flashdpb.ClaimManyRequest) (*flashdpb.ClaimManyResponse, error) {
	g := d.group
	g.mu.Lock()
	batching := g.batching
	g.manyCalls++
	if batching {
		g.manySizes = append(g.manySizes, len(req.GetClaims()))
	}
	g.mu.Unlock()
	if !batching {
		return nil, status.Error(codes.Unimplemented, "method ClaimMany not implemented")
	}
	out := make([]*flashdpb.ClaimManyOutcome, len(req.GetClaims()))
	var wg sync.WaitGroup
	for i, e := range req.GetClaims() {
		wg.Go(func() {
			resp, err := d.Claim(entryContext(ctx, e), e.GetClaim())
			if err != nil {
				out[i] = &flashdpb.ClaimManyOutcome{Error: flashdpb.NewCallStatus(err)}
				return
			}
			out[i] = &flashdpb.ClaimManyOutcome{Claim: resp.GetClaim()}
		})
	}
	wg.Wait()
	return &flashdpb.ClaimManyResponse{Outcomes: out}, nil
}

// DrawMany serves each draw as a DrawCard call of its own, as ClaimMany
// serves claims; UNIMPLEMENTED unless the doors are batching.
func (d *fakeDoor) DrawMany(ctx context.Context, req *flashdpb.DrawManyRequest) (*flashdpb.DrawManyResponse, error) {
	g := d.group
	g.mu.Lock()
	batching := g.batching
	g.manyCalls++
	if batching {
		g.manySizes = append(g.manySizes, len(req.GetDraws()))
	}
	g.mu.Unlock()
	if !batching {
		return nil, status.Error(codes.Unimplemented, "method DrawMany not implemented")
	}
	out := make([]*flashdpb.DrawManyOutcome, len(req.GetDraws()))
	var wg sync.WaitGroup
	for i, e := range req.GetDraws() {
		wg.Go(func() {
			resp, err := d.DrawCard(entryContext(ctx, e), e.GetDraw())
			if err != nil {
				out[i] = &flashdpb.DrawManyOutcome{Error: flashdpb.NewCallStatus(err)}
				return
			}
			out[i] = &flashdpb.DrawManyOutcome{Draw: resp}
		})
	}
	wg.Wait()
	return &flashdpb.DrawManyResponse{Outcomes: out}, nil
}

// entryContext is the incoming context a unary call for entry e would
// have had: the call's metadata with the entry's credentials.
func entryContext(ctx context.Context, e interface {
	GetInsecureUserId() string
	GetAuthorization() string
}) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	if e.GetInsecureUserId() != "" {
		md.Set(mdUserID, e.GetInsecureUserId())
	}
	if e.GetAuthorization() != "" {
		md.Set(mdAuthorization, e.GetAuthorization())
	}
	return metadata.NewIncomingContext(ctx, md)
}

func (d *fakeDoor) GetItem(ctx context.Context, req *flashdpb.PublicItemRequest) (*flashdpb.PublicItem, error) {
	if err := d.serve(ctx, "GetItem", "", false); err != nil {
		return nil, err
	}
	return &flashdpb.PublicItem{CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(), RemainingPercent: 50}, nil
}

func (d *fakeDoor) ListMyClaims(ctx context.Context, req *flashdpb.ListMyClaimsRequest) (*flashdpb.ListMyClaimsResponse, error) {
	if err := d.serve(ctx, "ListMyClaims", "", false); err != nil {
		return nil, err
	}
	return &flashdpb.ListMyClaimsResponse{Claims: []*flashdpb.Claim{{Id: 42, CampaignId: req.GetCampaignId()}}}, nil
}

// newTestClient returns a front-door client with short pauses, closed at
// the end of the test.
func newTestClient(t *testing.T, addrs []string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithBackoff(time.Millisecond, 4*time.Millisecond)}, opts...)
	c, err := New(testContext(t), addrs, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (g *fakeDoors) batchCalls() (calls int, sizes []int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.manyCalls, append([]int(nil), g.manySizes...)
}

func (g *fakeDoors) setBatching(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.batching = on
}
