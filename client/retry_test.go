package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// newTestStore returns a client with a short backoff, closed at the end of
// the test.
func newTestStore(t *testing.T, addrs []string, opts ...Option) *Store {
	t.Helper()
	opts = append([]Option{WithBackoff(time.Millisecond, 4*time.Millisecond)}, opts...)
	s, err := NewStore(addrs, opts...)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requestIDs returns the request IDs of the calls, in order, from all nodes.
func requestIDs(nodes ...*fakeNode) []string {
	var ids []string
	for _, n := range nodes {
		for _, c := range n.recorded() {
			ids = append(ids, c.requestID)
		}
	}
	return ids
}

func assertCalls(t *testing.T, n *fakeNode, want int) {
	t.Helper()
	if got := len(n.recorded()); got != want {
		t.Errorf("node %s got %d calls, want %d", n.addr, got, want)
	}
}

func assertOneRequestID(t *testing.T, ids []string) {
	t.Helper()
	if len(ids) == 0 {
		t.Fatal("no calls")
	}
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("request IDs %q: want one non-empty ID on every attempt", ids)
		}
	}
}

func TestNotLeaderHintIsFollowedAtOnce(t *testing.T) {
	a, b, c := startFakeNode(t), startFakeNode(t), startFakeNode(t)
	a.always(notLeader("n2", b.addr))
	c.always(notLeader("n2", b.addr))
	// A pause would show: the backoff is long, the call's deadline short.
	s := newTestStore(t, []string{a.addr, c.addr, b.addr}, WithBackoff(time.Hour, time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	claim, err := s.Claim(ctx, "c1", "i1", "u1", 1, "")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	assertCalls(t, a, 1)
	assertCalls(t, c, 0) // the hint skipped it
	assertCalls(t, b, 1)
	assertOneRequestID(t, requestIDs(a, b))
	if claim.GetRequestId() != b.recorded()[0].requestID {
		t.Errorf("claim's request ID %q, sent %q", claim.GetRequestId(), b.recorded()[0].requestID)
	}
	if got := s.Leader(); got != b.addr {
		t.Errorf("Leader() = %q, want %q", got, b.addr)
	}

	// The next call goes straight to the believed leader.
	if _, err := s.Claim(ctx, "c1", "i1", "u2", 1, ""); err != nil {
		t.Fatalf("second Claim: %v", err)
	}
	assertCalls(t, a, 1)
	assertCalls(t, b, 2)
}

func TestNotLeaderHintToAnAddressNotConfigured(t *testing.T) {
	follower, leader := startFakeNode(t), startFakeNode(t)
	follower.always(notLeader("n9", leader.addr))
	s := newTestStore(t, []string{follower.addr})

	if _, err := s.Settle(testContext(t), &flashdpb.SettleRequest{ClaimId: 4, RequestId: "settle-4"}); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	assertCalls(t, follower, 1)
	assertCalls(t, leader, 1)
	if ids := requestIDs(follower, leader); ids[0] != "settle-4" || ids[1] != "settle-4" {
		t.Errorf("request IDs %q, want settle-4 twice", ids)
	}
	if got := s.Leader(); got != leader.addr {
		t.Errorf("Leader() = %q, want %q", got, leader.addr)
	}
}

func TestHintToANodeDownInThisCallIsNotFollowed(t *testing.T) {
	// The leader just died; a follower still names it.
	dead, follower, leader := startFakeNode(t), startFakeNode(t), startFakeNode(t)
	dead.always(status.Error(codes.Unavailable, "connection refused"))
	follower.always(notLeader("n1", dead.addr))
	s := newTestStore(t, []string{dead.addr, follower.addr, leader.addr})

	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, ""); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	assertCalls(t, dead, 1)
	assertCalls(t, follower, 1)
	assertCalls(t, leader, 1)
	assertOneRequestID(t, requestIDs(dead, follower, leader))
}

func TestElectionInProgressPausesBeforeTheNextNode(t *testing.T) {
	a, b := startFakeNode(t), startFakeNode(t)
	a.always(notLeader("", "")) // no leader known
	const backoff = 40 * time.Millisecond
	s := newTestStore(t, []string{a.addr, b.addr}, WithBackoff(backoff, backoff))

	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, ""); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	assertCalls(t, a, 1)
	assertCalls(t, b, 1)
	if waited := b.recorded()[0].at.Sub(a.recorded()[0].at); waited < backoff/2 {
		t.Errorf("asked the next node after %v, want a pause of at least %v", waited, backoff/2)
	}
}

func TestDefaultBudgetOutlastsAnElection(t *testing.T) {
	// With the default policy, a call started as the leader dies outlives
	// an election of a second: followers name the dead leader until then.
	dead, n2, n3 := startFakeNode(t), startFakeNode(t), startFakeNode(t)
	dead.always(status.Error(codes.Unavailable, "connection refused"))
	elected := time.Now().Add(time.Second)
	for _, n := range []*fakeNode{n2, n3} {
		n.script(func(context.Context, fakeCall) error {
			if time.Now().Before(elected) {
				return notLeader("n1", dead.addr)
			}
			if n != n3 {
				return notLeader("n3", n3.addr)
			}
			return nil
		})
	}
	s, err := NewStore([]string{dead.addr, n2.addr, n3.addr})
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	defer s.Close()

	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, ""); err != nil {
		t.Fatalf("Claim across an election: %v", err)
	}
	if got := s.Leader(); got != n3.addr {
		t.Errorf("Leader() = %q, want %q", got, n3.addr)
	}
}

func TestUnavailableTriesTheNextEndpoint(t *testing.T) {
	a, b, c := startFakeNode(t), startFakeNode(t), startFakeNode(t)
	a.always(status.Error(codes.Unavailable, "shutting down"))
	b.always(notLeader("", "")) // election in progress: no hint
	s := newTestStore(t, []string{a.addr, b.addr, c.addr})

	if _, err := s.AdjustStock(testContext(t), &flashdpb.AdjustStockRequest{CampaignId: "c1", ItemId: "i1", Delta: 5}); err != nil {
		t.Fatalf("AdjustStock: %v", err)
	}
	for _, n := range []*fakeNode{a, b, c} {
		assertCalls(t, n, 1)
	}
	assertOneRequestID(t, requestIDs(a, b, c))
}

func TestConnectionErrorTriesTheNextEndpoint(t *testing.T) {
	live := startFakeNode(t)
	s := newTestStore(t, []string{deadAddr(t), live.addr})

	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, "req-1"); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	assertCalls(t, live, 1)
	if got := live.recorded()[0].requestID; got != "req-1" {
		t.Errorf("request ID %q, want req-1", got)
	}
}

func TestRefusalsAreNeverRetried(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		is     []error
		reason string
	}{
		{"sold out", refusal(codes.FailedPrecondition, "SOLD_OUT", "item i1 sold out"),
			[]error{ErrSoldOut, ErrFailedPrecondition}, "SOLD_OUT"},
		{"limit", refusal(codes.FailedPrecondition, "LIMIT_REACHED", "u1 has 1 of 1"),
			[]error{ErrLimitReached, ErrFailedPrecondition}, "LIMIT_REACHED"},
		{"not eligible", refusal(codes.FailedPrecondition, "NOT_ELIGIBLE", "wave 3 opens later"),
			[]error{ErrNotEligible}, "NOT_ELIGIBLE"},
		{"closed", refusal(codes.FailedPrecondition, "CAMPAIGN_CLOSED", "ended"),
			[]error{ErrCampaignClosed}, "CAMPAIGN_CLOSED"},
		{"not found", refusal(codes.NotFound, "ITEM_NOT_FOUND", "no item i1"),
			[]error{ErrNotFound}, "ITEM_NOT_FOUND"},
		{"exists", refusal(codes.AlreadyExists, "ALREADY_EXISTS", "campaign c1 exists"),
			[]error{ErrAlreadyExists}, "ALREADY_EXISTS"},
		{"invalid", refusal(codes.InvalidArgument, "INVALID_ARGUMENT", "quantity 0"),
			[]error{ErrInvalidArgument}, "INVALID_ARGUMENT"},
		{"permission", status.Error(codes.PermissionDenied, "admin only"),
			[]error{ErrPermissionDenied}, ""},
		{"unauthenticated", status.Error(codes.Unauthenticated, "no token"),
			[]error{ErrUnauthenticated}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startFakeNode(t), startFakeNode(t)
			a.always(tt.err)
			s := newTestStore(t, []string{a.addr, b.addr})

			_, err := s.ClaimBatch(testContext(t), &flashdpb.ClaimBatchRequest{Claims: []*flashdpb.ClaimRequest{{ItemId: "i1"}}})
			if err == nil {
				t.Fatal("ClaimBatch succeeded")
			}
			assertCalls(t, a, 1)
			assertCalls(t, b, 0)
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("%v matches ErrUnavailable", err)
			}
			if got := Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
			if IsRetryable(err) {
				t.Error("IsRetryable = true")
			}
			if want := status.Convert(tt.err).Message(); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks the server's message %q", err, want)
			}
			if got := status.Code(err); got != status.Code(tt.err) {
				t.Errorf("status.Code = %v, want %v", got, status.Code(tt.err))
			}
		})
	}
}

func TestAttemptsAreBounded(t *testing.T) {
	a, b := startFakeNode(t), startFakeNode(t)
	a.always(status.Error(codes.Unavailable, "down"))
	b.always(status.Error(codes.Unavailable, "down"))
	s := newTestStore(t, []string{a.addr, b.addr}, WithMaxAttempts(5))

	_, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, "")
	if !errors.Is(err, ErrUnavailable) || !IsRetryable(err) {
		t.Fatalf("err = %v, want a retryable ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "5 attempts") {
		t.Errorf("error %q does not say how many attempts were made", err)
	}
	assertCalls(t, a, 3)
	assertCalls(t, b, 2)
	assertOneRequestID(t, requestIDs(a, b))
}

func TestHintLoopIsBounded(t *testing.T) {
	// Two nodes each claiming the other leads.
	a, b := startFakeNode(t), startFakeNode(t)
	a.always(notLeader("b", b.addr))
	b.always(notLeader("a", a.addr))
	s := newTestStore(t, []string{a.addr, b.addr}, WithMaxAttempts(6))

	_, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, "")
	if !errors.Is(err, ErrNotLeader) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrNotLeader", err)
	}
	if got := len(a.recorded()) + len(b.recorded()); got != 6 {
		t.Errorf("%d attempts, want 6", got)
	}
}

func TestAttemptTimeoutMovesOn(t *testing.T) {
	hung, live := startFakeNode(t), startFakeNode(t)
	hung.script(func(ctx context.Context, _ fakeCall) error {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	})
	// The live node must answer within one attempt timeout: 50 ms was not
	// always enough under -race on a loaded machine (a third attempt).
	s := newTestStore(t, []string{hung.addr, live.addr}, WithAttemptTimeout(time.Second))

	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, "req-7"); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	assertCalls(t, hung, 1)
	assertCalls(t, live, 1)
	assertOneRequestID(t, requestIDs(hung, live))
}

func TestCallDeadlineEndsRetries(t *testing.T) {
	hung, other := startFakeNode(t), startFakeNode(t)
	hung.script(func(ctx context.Context, _ fakeCall) error {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	})
	s := newTestStore(t, []string{hung.addr, other.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	_, err := s.Claim(ctx, "c1", "i1", "u1", 1, "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if !IsRetryable(err) {
		t.Error("a timed-out claim should be retryable with its request ID")
	}
	assertCalls(t, hung, 1)
	assertCalls(t, other, 0)
}

func TestServerDeadlineExceededIsRetriedWhileTheCallLives(t *testing.T) {
	a, b := startFakeNode(t), startFakeNode(t)
	a.always(status.Error(codes.DeadlineExceeded, "raft apply timed out"))
	s := newTestStore(t, []string{a.addr, b.addr})

	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, ""); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	assertCalls(t, a, 1)
	assertCalls(t, b, 1)
	assertOneRequestID(t, requestIDs(a, b))
}

func TestRetryInfoWaitsForTheHintOnTheSameNode(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"overloaded", overloaded(retryAfter)},
		{"leader not ready", retryLater(codes.Unavailable, "LEADER_NOT_READY", retryAfter)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testRetryAfter(t, tt.err) })
	}
}

const retryAfter = 40 * time.Millisecond

func testRetryAfter(t *testing.T, refusal error) {
	a, b := startFakeNode(t), startFakeNode(t)
	a.script(func(_ context.Context, c fakeCall) error {
		if len(a.recorded()) == 1 {
			return refusal
		}
		return nil
	})
	s := newTestStore(t, []string{a.addr, b.addr})

	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, ""); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	assertCalls(t, a, 2)
	assertCalls(t, b, 0)
	assertOneRequestID(t, requestIDs(a))
	calls := a.recorded()
	if waited := calls[1].at.Sub(calls[0].at); waited < retryAfter {
		t.Errorf("retried after %v, before the hint of %v", waited, retryAfter)
	}
}

// The hint is an hour, the deadline a minute: a client that waited would
// return at the deadline (the test timed it against 4 s, which a loaded
// machine could exceed).
func TestOverloadHintLongerThanTheDeadlineFailsAtOnce(t *testing.T) {
	a := startFakeNode(t)
	a.always(overloaded(time.Hour))
	s := newTestStore(t, []string{a.addr})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := s.Claim(ctx, "c1", "i1", "u1", 1, "")
	if !errors.Is(err, ErrOverloaded) || !IsRetryable(err) {
		t.Fatalf("err = %v, want a retryable ErrOverloaded", err)
	}
	if ctx.Err() != nil {
		t.Errorf("waited until the deadline for a retry that could not happen in time")
	}
	assertCalls(t, a, 1)
}

func TestStaleReadsGoToAnyNode(t *testing.T) {
	a, b, c := startFakeNode(t), startFakeNode(t), startFakeNode(t)
	s := newTestStore(t, []string{a.addr, b.addr, c.addr})
	ctx := testContext(t)

	for range 3 {
		req := &flashdpb.GetItemRequest{CampaignId: "c1", ItemId: "i1", Consistency: flashdpb.Consistency_CONSISTENCY_STALE}
		if _, err := s.GetItem(ctx, req); err != nil {
			t.Fatalf("GetItem: %v", err)
		}
	}
	for _, n := range []*fakeNode{a, b, c} {
		assertCalls(t, n, 1)
	}
	if got := s.Leader(); got != "" {
		t.Errorf("a stale read made %q the believed leader", got)
	}
}

func TestLinearizableReadsGoToTheLeader(t *testing.T) {
	a, b := startFakeNode(t), startFakeNode(t)
	a.always(notLeader("b", b.addr))
	s := newTestStore(t, []string{a.addr, b.addr})
	ctx := testContext(t)

	for range 3 {
		if _, err := s.GetItem(ctx, &flashdpb.GetItemRequest{CampaignId: "c1", ItemId: "i1"}); err != nil {
			t.Fatalf("GetItem: %v", err)
		}
	}
	assertCalls(t, a, 1)
	assertCalls(t, b, 3)
}

func TestClaimOutcomeRefusalIsATypedError(t *testing.T) {
	a := startFakeNode(t)
	s := newTestStore(t, []string{a.addr})

	_, err := s.Claim(testContext(t), "c1", "gone", "u1", 1, "")
	if !errors.Is(err, ErrSoldOut) || Reason(err) != "SOLD_OUT" {
		t.Fatalf("err = %v (reason %q), want ErrSoldOut", err, Reason(err))
	}
	if want := "sold out (SOLD_OUT): item gone has no stock left"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("status.Code = %v, want FailedPrecondition", status.Code(err))
	}
	assertCalls(t, a, 1)
}

func TestClusterStatusFailsOverToAnyNode(t *testing.T) {
	live := startFakeNode(t)
	s := newTestStore(t, []string{deadAddr(t), live.addr})

	if _, err := s.ClusterStatus(testContext(t), &flashdpb.ClusterStatusRequest{}); err != nil {
		t.Fatalf("ClusterStatus: %v", err)
	}
	assertCalls(t, live, 1)
}

func TestNodeStatusAsksTheGivenNodeOnce(t *testing.T) {
	configured, other := startFakeNode(t), startFakeNode(t)
	s := newTestStore(t, []string{configured.addr})
	ctx := testContext(t)

	resp, err := s.NodeStatus(ctx, other.addr, &flashdpb.NodeStatusRequest{})
	if err != nil || resp.GetId() != other.addr {
		t.Fatalf("NodeStatus = %v, %v; want the status of %s", resp, err, other.addr)
	}
	assertCalls(t, configured, 0)

	other.always(status.Error(codes.Unavailable, "down"))
	if _, err := s.NodeStatus(ctx, other.addr, &flashdpb.NodeStatusRequest{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	assertCalls(t, other, 2)
}

func TestClosedStore(t *testing.T) {
	a := startFakeNode(t)
	s, err := NewStore([]string{a.addr})
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Claim(testContext(t), "c1", "i1", "u1", 1, ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("Claim after Close: %v, want ErrClosed", err)
	}
	assertCalls(t, a, 0)
}

func TestNewStoreValidates(t *testing.T) {
	tests := []struct {
		name  string
		addrs []string
		opts  []Option
	}{
		{"no endpoints", nil, nil},
		{"zero attempts", []string{"127.0.0.1:1"}, []Option{WithMaxAttempts(0)}},
		{"backoff max below base", []string{"127.0.0.1:1"}, []Option{WithBackoff(time.Second, time.Millisecond)}},
		{"negative attempt timeout", []string{"127.0.0.1:1"}, []Option{WithAttemptTimeout(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := NewStore(tt.addrs, tt.opts...); err == nil {
				_ = s.Close()
				t.Fatal("NewStore succeeded")
			}
		})
	}
}
