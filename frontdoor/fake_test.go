package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// fakeStore is an in-memory store: items with stock and per-user limits,
// idempotent request IDs, and hooks to slow it down or fail it.
type fakeStore struct {
	mu        sync.Mutex
	items     map[itemKey]*pb.Item
	claims    map[string]*pb.Claim // by request ID
	byUser    map[userItemKey]uint32
	nextID    uint64
	index     uint64
	batches   [][]*pb.ClaimRequest
	live      []*pb.FrontDoorPresence
	config    *pb.FrontDoorConfig
	announces int

	delay   time.Duration // per batch
	fail    error         // every batch fails with it
	block   chan struct{} // batches wait for it to close
	events  chan *pb.WatchEvent
	watchFn func() error // Watch's error, if set
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		items: map[itemKey]*pb.Item{}, claims: map[string]*pb.Claim{}, byUser: map[userItemKey]uint32{},
		events: make(chan *pb.WatchEvent, 1024), config: &pb.FrontDoorConfig{},
	}
}

func (s *fakeStore) addItem(campaign, item string, stock uint64, limit uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[itemKey{campaign, item}] = &pb.Item{CampaignId: campaign, Id: item, Total: stock, Available: stock, PerUserLimit: limit}
}

func (s *fakeStore) ClaimBatch(ctx context.Context, req *pb.ClaimBatchRequest) (*pb.ClaimBatchResponse, error) {
	s.mu.Lock()
	delay, fail, block := s.delay, s.fail, s.block
	s.batches = append(s.batches, req.GetClaims())
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if fail != nil {
		return nil, fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	out := &pb.ClaimBatchResponse{Index: s.index}
	for _, c := range req.GetClaims() {
		out.Outcomes = append(out.Outcomes, s.claimLocked(c))
	}
	return out, nil
}

func (s *fakeStore) claimLocked(c *pb.ClaimRequest) *pb.ClaimOutcome {
	if old, ok := s.claims[c.GetRequestId()]; ok {
		return &pb.ClaimOutcome{Claim: old}
	}
	it := s.items[itemKey{c.GetCampaignId(), c.GetItemId()}]
	if it == nil {
		return &pb.ClaimOutcome{Reason: pb.Reason_REASON_ITEM_NOT_FOUND}
	}
	k := userItemKey{c.GetUserId(), c.GetCampaignId(), c.GetItemId()}
	switch {
	case s.byUser[k]+c.GetQuantity() > max(it.GetPerUserLimit(), 1):
		return &pb.ClaimOutcome{Reason: pb.Reason_REASON_LIMIT_REACHED}
	case it.Available < uint64(c.GetQuantity()):
		return &pb.ClaimOutcome{Reason: pb.Reason_REASON_SOLD_OUT}
	}
	it.Available -= uint64(c.GetQuantity())
	it.Reserved += uint64(c.GetQuantity())
	s.byUser[k] += c.GetQuantity()
	s.nextID++
	cl := &pb.Claim{
		Id: s.nextID, CampaignId: c.GetCampaignId(), ItemId: c.GetItemId(), UserId: c.GetUserId(),
		Quantity: c.GetQuantity(), State: pb.ClaimState_CLAIM_STATE_RESERVED, RequestId: c.GetRequestId(),
	}
	s.claims[c.GetRequestId()] = cl
	return &pb.ClaimOutcome{Claim: cl}
}

func (s *fakeStore) batchCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

func (s *fakeStore) Watch(ctx context.Context, _ *pb.WatchRequest) (WatchStream, error) {
	if s.watchFn != nil {
		if err := s.watchFn(); err != nil {
			return nil, err
		}
	}
	return &fakeStream{ctx: ctx, events: s.events}, nil
}

type fakeStream struct {
	ctx    context.Context
	events chan *pb.WatchEvent
}

func (f *fakeStream) Recv() (*pb.WatchEvent, error) {
	select {
	case ev, ok := <-f.events:
		if !ok {
			return nil, io.EOF
		}
		return ev, nil
	case <-f.ctx.Done():
		return nil, f.ctx.Err()
	}
}

func (s *fakeStore) AnnounceFrontDoor(_ context.Context, req *pb.AnnounceFrontDoorRequest) (*pb.AnnounceFrontDoorResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.announces++
	live := append([]*pb.FrontDoorPresence(nil), s.live...)
	return &pb.AnnounceFrontDoorResponse{Live: live, Config: s.config, Ttl: durationpb.New(3 * time.Second)}, nil
}

func (s *fakeStore) GetItem(_ context.Context, req *pb.GetItemRequest) (*pb.GetItemResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.items[itemKey{req.GetCampaignId(), req.GetItemId()}]
	if it == nil {
		return nil, status.Error(codes.NotFound, "no item")
	}
	return &pb.GetItemResponse{Item: it, Index: s.index}, nil
}

func (s *fakeStore) ListClaims(_ context.Context, req *pb.ListClaimsRequest) (*pb.ListClaimsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.ListClaimsResponse{}
	for _, c := range s.claims {
		if c.GetUserId() == req.GetUserId() {
			out.Claims = append(out.Claims, c)
		}
	}
	return out, nil
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var t0 = time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)

// newTestDoor returns a door on store, not started: tests feed its catalog
// and configuration themselves. mod may change the config.
func newTestDoor(t *testing.T, store Store, mod func(*Config)) (*Door, *testClock) {
	t.Helper()
	clock := &testClock{now: t0}
	cfg := Config{ID: "f1", AuthMode: AuthInsecureHeader, Now: clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg, store, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, clock
}

// openCampaign puts an open flash-sale campaign "c" with item "i" (stock
// per the store) in the door's catalog and marks it synced.
func openCampaign(d *Door, waves uint32, interval time.Duration, limit uint32) {
	d.catalog.updateCampaign(&pb.Campaign{
		Id: "c", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, State: pb.CampaignState_CAMPAIGN_STATE_OPEN,
		Start: timestamppb.New(t0.Add(-time.Minute)), WaveCount: waves, WaveInterval: durationpb.New(interval),
		PerUserLimit: limit,
	})
	d.catalog.updateItem(&pb.Item{CampaignId: "c", Id: "i", Total: 100, Available: 100, PerUserLimit: limit}, 1)
	d.catalog.synced.Store(true)
}

// userCtx is an incoming call context for user (insecure-header mode).
func userCtx(user string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdUserID, user))
}

func claimReq(requestID string) *pb.FrontDoorClaimRequest {
	return &pb.FrontDoorClaimRequest{CampaignId: "c", ItemId: "i", Quantity: 1, RequestId: requestID}
}

// reasonOf returns the ErrorInfo reason of a status error.
func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return info.GetReason()
		}
	}
	return ""
}

// wantRefusal fails unless err has the code and reason.
func wantRefusal(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || reasonOf(err) != reason {
		t.Fatalf("got %v (reason %q), want %v %s", err, reasonOf(err), code, reason)
	}
}

var errBoom = errors.New("boom")

func userName(i int) string { return fmt.Sprintf("user-%d", i) }

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
