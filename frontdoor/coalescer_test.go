package frontdoor

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Stage 6: the caches answer without the store.
func TestCacheStage(t *testing.T) {
	tests := []struct {
		name      string
		prepare   func(t *testing.T, d *Door, store *fakeStore)
		user      string
		req       *pb.FrontDoorClaimRequest
		reason    string // "" granted
		wantBatch bool   // the store saw the claim
	}{
		{
			name:    "sold out from the watch stream",
			prepare: func(t *testing.T, d *Door, _ *fakeStore) { d.catalog.updateItem(soldOutItem(), 5) },
			user:    "a", req: claimReq("r1"), reason: "SOLD_OUT",
		},
		{
			name: "a stale watch event does not undo a newer sell-out",
			prepare: func(t *testing.T, d *Door, _ *fakeStore) {
				d.catalog.item("c", "i").learnSoldOut(9)
				d.catalog.updateItem(&pb.Item{CampaignId: "c", Id: "i", Total: 100, Available: 3, PerUserLimit: 1}, 8)
			},
			user: "a", req: claimReq("r1"), reason: "SOLD_OUT",
		},
		{
			name: "a newer watch event puts the item back on sale",
			prepare: func(t *testing.T, d *Door, _ *fakeStore) {
				d.catalog.item("c", "i").learnSoldOut(9)
				d.catalog.updateItem(&pb.Item{CampaignId: "c", Id: "i", Total: 100, Available: 3, PerUserLimit: 1}, 10)
			},
			user: "a", req: claimReq("r1"), wantBatch: true,
		},
		{
			name: "sold out learnt from a batch answer",
			prepare: func(t *testing.T, d *Door, store *fakeStore) {
				store.addItem("c", "i", 0, 1)
				if _, err := d.Claim(userCtx("b"), claimReq("first")); reasonOf(err) != "SOLD_OUT" {
					t.Fatalf("first claim: %v", err)
				}
				store.mu.Lock()
				store.batches = nil
				store.mu.Unlock()
			},
			user: "a", req: claimReq("r1"), reason: "SOLD_OUT",
		},
		{
			name: "limit reached learnt from a grant",
			prepare: func(t *testing.T, d *Door, _ *fakeStore) {
				if _, err := d.Claim(userCtx("a"), claimReq("first")); err != nil {
					t.Fatal(err)
				}
			},
			user: "a", req: claimReq("second"), reason: "LIMIT_REACHED",
		},
		{
			name: "a retry of a granted claim is answered with it",
			prepare: func(t *testing.T, d *Door, _ *fakeStore) {
				if _, err := d.Claim(userCtx("a"), claimReq("first")); err != nil {
					t.Fatal(err)
				}
			},
			user: "a", req: claimReq("first"),
		},
		{
			name:    "a retry flagged as such skips the sold-out cache",
			prepare: func(t *testing.T, d *Door, _ *fakeStore) { d.catalog.updateItem(soldOutItem(), 5) },
			user:    "a", req: &pb.FrontDoorClaimRequest{CampaignId: "c", ItemId: "i", RequestId: "r1", Retry: true},
			wantBatch: true,
		},
		{
			name: "another user is not held back by a user's limit",
			prepare: func(t *testing.T, d *Door, _ *fakeStore) {
				if _, err := d.Claim(userCtx("a"), claimReq("first")); err != nil {
					t.Fatal(err)
				}
			},
			user: "b", req: claimReq("second"), wantBatch: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := newFakeStore()
			store.addItem("c", "i", 100, 1)
			d, _ := newTestDoor(t, store, nil)
			openCampaign(d, 0, 0, 1)
			tc.prepare(t, d, store)
			before := store.batchCount()
			resp, err := d.Claim(userCtx(tc.user), tc.req)
			if tc.reason == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.reason != "" {
				wantRefusal(t, err, codes.FailedPrecondition, tc.reason)
			} else if resp.GetClaimId() == 0 || resp.GetRequestId() != tc.req.GetRequestId() {
				t.Fatalf("answer %v", resp)
			}
			if sent := store.batchCount() > before; sent != tc.wantBatch {
				t.Fatalf("store saw a batch: %v, want %v", sent, tc.wantBatch)
			}
		})
	}
}

func soldOutItem() *pb.Item {
	return &pb.Item{CampaignId: "c", Id: "i", Total: 100, Available: 0, Reserved: 100, PerUserLimit: 1}
}

// A limit hint ends with its TTL: a released reservation may be claimed
// again, and the store decides.
func TestLimitHintExpires(t *testing.T) {
	h := newLimitHints(1024)
	k := userItemKey{"a", "c", "i"}
	h.learnReached(k, t0)
	if _, reached := h.check(k, "r", 1, 1, t0.Add(limitHintTTL-time.Second)); !reached {
		t.Fatal("hint forgotten early")
	}
	if _, reached := h.check(k, "r", 1, 1, t0.Add(limitHintTTL)); reached {
		t.Fatal("hint kept past its TTL")
	}
	// A grant with a short reservation deadline ends the hint at it.
	k = userItemKey{"b", "c", "i"}
	h.learnGrant(k, &pb.Claim{Id: 1, Quantity: 1, RequestId: "g", Deadline: timestamppbAt(t0.Add(time.Second))}, t0)
	if _, reached := h.check(k, "r", 1, 1, t0.Add(2*time.Second)); reached {
		t.Fatal("hint outlived the reservation")
	}
	// With a limit of 3, two units granted leave room for one more.
	k = userItemKey{"c", "c", "i"}
	h.learnGrant(k, &pb.Claim{Id: 2, Quantity: 2, RequestId: "g2"}, t0)
	if _, reached := h.check(k, "r", 1, 3, t0); reached {
		t.Fatal("refused within the limit")
	}
	if _, reached := h.check(k, "r", 2, 3, t0); !reached {
		t.Fatal("allowed over the limit")
	}
}

// newCoalescerOn returns a coalescer on store whose answers are the
// outcomes as given, and its metrics.
func newCoalescerOn(t *testing.T, store Store, mod func(*Config)) *coalescer[*pendingClaim, *pb.Claim] {
	t.Helper()
	cfg := Config{ID: "f1", AuthMode: AuthInsecureHeader, BatchMax: 8, BatchWindow: 20 * time.Millisecond, BatchesInFlight: 1, QueueMax: 64}
	if mod != nil {
		mod(&cfg)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	d, _ := newTestDoor(t, store, func(c *Config) { *c = cfg })
	return d.coalescer
}

func pendingFor(user string) *pendingClaim {
	return &pendingClaim{req: &pb.ClaimRequest{RequestId: "r-" + user, CampaignId: "c", ItemId: "i", UserId: user, Quantity: 1}}
}

// submitAll submits claims for users concurrently and returns their results.
func submitAll(ctx context.Context, c *coalescer[*pendingClaim, *pb.Claim], users ...string) []claimResult {
	out := make([]claimResult, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = c.submit(ctx, pendingFor(u)) }()
	}
	wg.Wait()
	return out
}

func TestCoalescerLoneClaimLeavesAtOnce(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 10, 1)
	c := newCoalescerOn(t, store, func(c *Config) { c.BatchWindow = time.Second })
	start := time.Now()
	r := c.submit(context.Background(), pendingFor("a"))
	if r.err != nil || r.value == nil {
		t.Fatalf("result %+v", r)
	}
	// Nothing in flight: the claim waits for no window.
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("lone claim took %v with a 1s window", took)
	}
}

func TestCoalescerBatchesWhileOneIsInFlight(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 100, 1)
	store.block = make(chan struct{})
	c := newCoalescerOn(t, store, func(c *Config) { c.BatchMax = 8; c.BatchWindow = time.Second })
	first := make(chan claimResult, 1)
	go func() { first <- c.submit(context.Background(), pendingFor("first")) }()
	waitFor(t, func() bool { return store.batchCount() == 1 })
	// 20 claims arrive while the first batch is in flight: with a window of
	// an hour, they leave when a batch is full (8) or when the store
	// answers (group commit).
	done := make(chan []claimResult, 1)
	users := make([]string, 20)
	for i := range users {
		users[i] = userName(i)
	}
	go func() { done <- submitAll(context.Background(), c, users...) }()
	waitFor(t, func() bool { return c.claimsIn.Load() == 21 })
	close(store.block)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	for _, r := range <-done {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	sizes := []int{}
	for _, b := range store.batches {
		sizes = append(sizes, len(b))
	}
	// The lone claim, two full batches formed while it was in flight, and
	// the rest as soon as the store answered.
	if fmt.Sprint(sizes) != "[1 8 8 4]" {
		t.Fatalf("batch sizes %v, want [1 8 8 4]", sizes)
	}
}

func TestCoalescerWindowEnds(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 100, 1)
	store.block = make(chan struct{})
	c := newCoalescerOn(t, store, func(c *Config) { c.BatchesInFlight = 2; c.BatchWindow = 50 * time.Millisecond })
	go c.submit(context.Background(), pendingFor("first")) // holds one slot
	waitFor(t, func() bool { return store.batchCount() == 1 })
	start := time.Now()
	go c.submit(context.Background(), pendingFor("second"))
	// The second slot is free, so the second claim leaves when its window
	// ends, though the first batch is still in flight.
	waitFor(t, func() bool { return store.batchCount() == 2 })
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Fatalf("left after %v, before its 50ms window", took)
	}
	close(store.block)
}

func TestCoalescerBoundedInFlightAndQueue(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 1000, 1)
	store.block = make(chan struct{})
	c := newCoalescerOn(t, store, func(c *Config) {
		c.BatchesInFlight = 2
		c.BatchMax = 4
		c.QueueMax = 8
		c.BatchWindow = time.Millisecond
	})
	var wg sync.WaitGroup
	results := make(chan claimResult, 64)
	for i := range 40 {
		wg.Add(1)
		go func() { defer wg.Done(); results <- c.submit(context.Background(), pendingFor(userName(i))) }()
	}
	// At most 2 batches of 4 in flight, 4 more held by the dispatcher for a
	// slot, 8 queued: the other claims are refused at once.
	full := 0
	deadline := time.After(5 * time.Second)
	for full < 40-2*4-4-8 {
		select {
		case r := <-results:
			if status.Code(r.err) != codes.ResourceExhausted || retryDelay(r.err) <= 0 {
				t.Fatalf("over the bound: %+v", r)
			}
			full++
		case <-deadline:
			t.Fatalf("only %d refused", full)
		}
	}
	if n := store.batchCount(); n > 2 {
		t.Fatalf("%d batches in flight, max 2", n)
	}
	close(store.block)
	wg.Wait()
	close(results)
	granted := 0
	for r := range results {
		switch {
		case r.err == nil:
			granted++
		case status.Code(r.err) != codes.ResourceExhausted:
			t.Fatalf("admitted claim failed: %v", r.err)
		}
	}
	if granted == 0 || granted > 2*4+4+8 {
		t.Fatalf("%d granted, want 1 to %d", granted, 2*4+4+8)
	}
}

func TestCoalescerAbandonedClaimIsNotSent(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 100, 1)
	store.block = make(chan struct{})
	c := newCoalescerOn(t, store, nil)
	go c.submit(context.Background(), pendingFor("first"))
	waitFor(t, func() bool { return store.batchCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if r := c.submit(ctx, pendingFor("gone")); status.Code(r.err) != codes.DeadlineExceeded {
		t.Fatalf("abandoned claim: %+v", r)
	}
	close(store.block)
	r := c.submit(context.Background(), pendingFor("later"))
	if r.err != nil {
		t.Fatal(r.err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, b := range store.batches {
		for _, cl := range b {
			if cl.GetUserId() == "gone" {
				t.Fatal("abandoned claim sent to the store")
			}
		}
	}
	waitFor(t, func() bool { return c.claimsIn.Load() == 0 }) // the first batch's answers, too
}

// A claim queued when the item sells out is answered without the store.
func TestCoalescerAnswersSoldOutWhileQueued(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 100, 1)
	store.block = make(chan struct{})
	d, _ := newTestDoor(t, store, func(c *Config) { c.BatchesInFlight = 1 })
	openCampaign(d, 0, 0, 1)
	go d.Claim(userCtx("first"), claimReq("r-first"))
	waitFor(t, func() bool { return store.batchCount() == 1 })
	done := make(chan error, 1)
	go func() { _, err := d.Claim(userCtx("queued"), claimReq("r-queued")); done <- err }()
	waitFor(t, func() bool { return d.coalescer.claimsIn.Load() == 2 })
	d.catalog.updateItem(soldOutItem(), 50)
	close(store.block)
	if err := <-done; reasonOf(err) != "SOLD_OUT" {
		t.Fatalf("queued claim: %v", err)
	}
	if n := store.batchCount(); n != 1 {
		t.Fatalf("%d batches, want 1", n)
	}
}

// A failed batch tells every caller to retry with the same request ID, and
// the next claims fail fast while the store is down.
//
// The door's clock stands still here: the store is known down for
// storeDownFor (500 ms) of it, which on the real clock a loaded machine
// could let pass before the next claim. Refused with no store call, the
// next claim has waited for nothing.
func TestCoalescerStoreDown(t *testing.T) {
	store := newFakeStore()
	store.fail = status.Error(codes.Unavailable, "no leader")
	clock := &testClock{now: t0}
	c := newCoalescerOn(t, store, func(c *Config) { c.Now = clock.Now })
	for _, r := range submitAll(context.Background(), c, "a", "b", "c") {
		wantRefusal(t, r.err, codes.Unavailable, reasonStoreUnavailable)
	}
	n := store.batchCount()
	r := c.submit(context.Background(), pendingFor("d"))
	wantRefusal(t, r.err, codes.Unavailable, reasonStoreUnavailable)
	if store.batchCount() != n {
		t.Fatal("store asked again while known down")
	}
	// An answer of the wrong size is no grant.
	store.fail = nil
	c = newCoalescerOn(t, &wrongSizeStore{fakeStore: store}, nil)
	if r := c.submit(context.Background(), pendingFor("e")); status.Code(r.err) != codes.Unavailable || r.value != nil {
		t.Fatalf("wrong-size answer gave %+v", r)
	}
}

type wrongSizeStore struct{ *fakeStore }

func (w *wrongSizeStore) ClaimBatch(context.Context, *pb.ClaimBatchRequest) (*pb.ClaimBatchResponse, error) {
	return &pb.ClaimBatchResponse{}, nil
}

// Closing refuses what is queued; nothing hangs.
func TestCoalescerCloseRefusesQueued(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 100, 1)
	store.block = make(chan struct{})
	cfg := Config{ID: "f1", AuthMode: AuthInsecureHeader, BatchesInFlight: 1, Now: time.Now}.withDefaults()
	m := mustMetrics(t)
	c := newCoalescer(cfg, func(ctx context.Context, b []*pendingClaim) ([]claimResult, error) {
		_, err := store.ClaimBatch(ctx, &pb.ClaimBatchRequest{})
		return make([]claimResult, len(b)), err
	}, nil, m, m.claimBatches)
	go c.submit(context.Background(), pendingFor("first"))
	waitFor(t, func() bool { return store.batchCount() == 1 })
	results := make(chan claimResult, 3)
	for i := range 3 {
		go func() { results <- c.submit(context.Background(), pendingFor(fmt.Sprint("q", i))) }()
	}
	waitFor(t, func() bool { return c.claimsIn.Load() == 4 })
	go func() { time.Sleep(20 * time.Millisecond); close(store.block) }()
	c.close()
	for range 3 {
		wantRefusal(t, (<-results).err, codes.Unavailable, reasonShuttingDown)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func timestamppbAt(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func mustMetrics(t *testing.T) *metrics {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}
