package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// Statuses as front doors send them (frontdoor/errors.go).
var (
	doorSoldOut      = refusal(codes.FailedPrecondition, "SOLD_OUT", "sold out")
	doorLimit        = refusal(codes.FailedPrecondition, "LIMIT_REACHED", "per-user limit reached")
	doorNotEligible  = retryLater(codes.FailedPrecondition, "NOT_ELIGIBLE", 3*time.Second)
	doorClosed       = refusal(codes.FailedPrecondition, "CAMPAIGN_CLOSED", "campaign is not open")
	doorNoItem       = refusal(codes.NotFound, "ITEM_NOT_FOUND", "no such item in this campaign")
	doorBadRequest   = refusal(codes.InvalidArgument, "INVALID_ARGUMENT", "quantity 3 is above the per-user limit 1")
	doorNoToken      = refusal(codes.Unauthenticated, "MISSING_TOKEN", "missing credentials")
	doorExpired      = refusal(codes.Unauthenticated, "TOKEN_EXPIRED", "token expired")
	doorDenied       = status.Error(codes.PermissionDenied, "not allowed")
	doorRateLimited  = retryLater(codes.ResourceExhausted, "RATE_LIMITED", 30*time.Millisecond)
	doorDegraded     = retryLater(codes.ResourceExhausted, "DEGRADED", 30*time.Millisecond)
	doorQueueFull    = retryLater(codes.ResourceExhausted, "OVERLOADED", 30*time.Millisecond)
	doorStoreDown    = refusal(codes.Unavailable, "STORE_UNAVAILABLE", "store unavailable, retry with the same request id")
	doorStoreLate    = retryLater(codes.Unavailable, "STORE_UNAVAILABLE", 30*time.Millisecond)
	doorShuttingDown = refusal(codes.Unavailable, "SHUTTING_DOWN", "front door shutting down")
	doorConnRefused  = status.Error(codes.Unavailable, "connection refused")
	doorDeadline     = status.Error(codes.DeadlineExceeded, "claim did not finish in time")
)

// TestClaimRetryPolicy scripts two front doors to fail the first attempts
// of a claim with each kind of error, and checks what the client retries,
// how often, where, after how long, and that every attempt carries the
// call's one request ID, flagged as a resend once an attempt's outcome is
// unknown (DESIGN.md section 7).
func TestClaimRetryPolicy(t *testing.T) {
	const backoff = 20 * time.Millisecond
	tests := []claimRetryCase{
		{name: "sold out", err: doorSoldOut, failures: 1, attempts: 1, wantErr: ErrSoldOut, resend: "-"},
		{name: "limit reached", err: doorLimit, failures: 1, attempts: 1, wantErr: ErrLimitReached, resend: "-"},
		{name: "not eligible, despite its retry hint", err: doorNotEligible, failures: 1, attempts: 1, wantErr: ErrNotEligible, resend: "-"},
		{name: "campaign closed", err: doorClosed, failures: 1, attempts: 1, wantErr: ErrCampaignClosed, resend: "-"},
		{name: "not found", err: doorNoItem, failures: 1, attempts: 1, wantErr: ErrNotFound, resend: "-"},
		{name: "bad request", err: doorBadRequest, failures: 1, attempts: 1, wantErr: ErrInvalidArgument, resend: "-"},
		{name: "no credentials", err: doorNoToken, failures: 1, attempts: 1, wantErr: ErrUnauthenticated, resend: "-"},
		{name: "token expired", err: doorExpired, failures: 1, attempts: 1, wantErr: ErrTokenExpired, resend: "-"},
		{name: "permission denied", err: doorDenied, failures: 1, attempts: 1, wantErr: ErrPermissionDenied, resend: "-"},

		{name: "front door unreachable: the other one at once", err: doorConnRefused, failures: 1, attempts: 2, moves: "o", resend: "-r"},
		{name: "front door shutting down: the other one, nothing applied", err: doorShuttingDown, failures: 1, attempts: 2, moves: "o", resend: "--"},
		{name: "store unavailable: pause, then the other one", err: doorStoreDown, failures: 1, attempts: 2, moves: "o", resend: "-r", minPause: backoff / 2},
		{name: "store unavailable with a hint: wait for it", err: doorStoreLate, failures: 2, attempts: 3, moves: "oo", resend: "-rr", minPause: 30 * time.Millisecond},
		{name: "rate limited: the same one after the hint", err: doorRateLimited, failures: 2, attempts: 3, moves: "ss", resend: "---", minPause: 30 * time.Millisecond},
		{name: "degraded (L2 drop): after the hint", err: doorDegraded, failures: 1, attempts: 2, moves: "s", resend: "--", minPause: 30 * time.Millisecond},
		{name: "queue full: after the hint", err: doorQueueFull, failures: 1, attempts: 2, moves: "s", resend: "--", minPause: 30 * time.Millisecond},
		{name: "deadline exceeded: resent with the same request ID", err: doorDeadline, failures: 1, attempts: 2, moves: "o", resend: "-r"},

		{name: "unavailable outlasts the attempts", err: doorStoreDown, failures: 99, attempts: 4, wantErr: ErrUnavailable, retryable: true, moves: "ooo", resend: "-rrr"},
		{name: "overloaded outlasts the attempts", err: doorQueueFull, failures: 99, attempts: 4, wantErr: ErrOverloaded, retryable: true, moves: "sss", resend: "----"},
	}
	for _, tt := range tests {
		for _, batched := range []bool{false, true} {
			name := map[bool]string{false: "unary/", true: "ClaimMany/"}[batched] + tt.name
			t.Run(name, func(t *testing.T) { testClaimRetry(t, tt, batched, backoff) })
		}
	}
}

// claimRetryCase is one row of TestClaimRetryPolicy.
type claimRetryCase struct {
	name      string
	err       error
	failures  int    // attempts that fail with err; the next one succeeds
	attempts  int    // attempts made
	wantErr   error  // nil: the claim is granted
	retryable bool   // IsRetryable of the error
	moves     string // per retry: 's' same front door, 'o' the other one
	resend    string // per attempt: 'r' flagged as a resend, '-' not
	minPause  time.Duration
}

// testClaimRetry runs one case, with every attempt a unary Claim call or
// a claim inside a ClaimMany call: the policy must not tell them apart.
func testClaimRetry(t *testing.T, tt claimRetryCase, batched bool, backoff time.Duration) {
	doors := startFakeDoors(t, 2)
	doors.failFirst(tt.failures, tt.err)
	opts := []Option{WithBackoff(backoff, backoff), WithMaxAttempts(4), WithoutRetryBudget(), WithoutClaimBatching()}
	if batched {
		doors.setBatching(true)
		opts[len(opts)-1] = WithClaimBatching(defaultClaimsPerCall, defaultCallsInFlight)
	}
	c := newTestClient(t, doors.addrs(), opts...)

	claim, err := c.Claim(testContext(t), "spring", "lantern", AsUser("alice"))
	calls := doors.recorded()
	switch {
	case tt.wantErr == nil && err != nil:
		t.Fatalf("Claim: %v", err)
	case tt.wantErr == nil && claim.GetRequestId() != calls[0].requestID:
		t.Errorf("claim's request ID %q, sent %q", claim.GetRequestId(), calls[0].requestID)
	case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
		t.Fatalf("err = %v, want %v", err, tt.wantErr)
	case tt.wantErr != nil && IsRetryable(err) != tt.retryable:
		t.Errorf("IsRetryable(%v) = %v, want %v", err, !tt.retryable, tt.retryable)
	}
	if tt.wantErr != nil && tt.wantErr != ErrUnavailable && tt.wantErr != ErrOverloaded {
		if got, want := Reason(err), newError(tt.err).Reason; got != want {
			t.Errorf("Reason = %q, want the server's %q", got, want)
		}
	}
	if len(calls) != tt.attempts {
		t.Fatalf("%d attempts, want %d", len(calls), tt.attempts)
	}
	var moves, resend []byte
	for i, call := range calls {
		if call.requestID == "" || call.requestID != calls[0].requestID {
			t.Errorf("attempt %d has request ID %q, the first %q", i+1, call.requestID, calls[0].requestID)
		}
		resend = append(resend, "-r"[b2i(call.retry)])
		if i == 0 {
			continue
		}
		moves = append(moves, "so"[b2i(call.door != calls[i-1].door)])
		if pause := call.at.Sub(calls[i-1].at); pause < tt.minPause {
			t.Errorf("attempt %d came %v after the one before, want at least %v", i+1, pause, tt.minPause)
		}
	}
	if string(moves) != tt.moves {
		t.Errorf("moves %q, want %q (s: same front door, o: the other)", moves, tt.moves)
	}
	if string(resend) != tt.resend {
		t.Errorf("resend flags %q, want %q", resend, tt.resend)
	}
	if many, _ := doors.batchCalls(); batched && many != len(calls) {
		t.Errorf("%d ClaimMany calls for %d attempts", many, len(calls))
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestGivenRequestIDIsSentOnEveryAttempt(t *testing.T) {
	doors := startFakeDoors(t, 1)
	doors.failFirst(2, doorStoreDown)
	c := newTestClient(t, doors.addrs(), WithoutRetryBudget())
	id := NewRequestID()

	claim, err := c.Claim(testContext(t), "spring", "lantern", AsUser("bob"), RequestID(id), Quantity(2))
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if claim.GetRequestId() != id || claim.GetQuantity() != 2 || claim.GetUserId() != "bob" {
		t.Errorf("claim %v: want request ID %s, quantity 2, user bob", claim, id)
	}
	for _, call := range doors.recorded() {
		if call.requestID != id {
			t.Errorf("sent request ID %q, want %q", call.requestID, id)
		}
	}
}

func TestEachClaimHasItsOwnRequestID(t *testing.T) {
	doors := startFakeDoors(t, 1)
	c := newTestClient(t, doors.addrs())
	ctx := testContext(t)
	for range 3 {
		if _, err := c.Claim(ctx, "spring", "lantern", AsUser("carol")); err != nil {
			t.Fatalf("Claim: %v", err)
		}
	}
	calls := doors.recorded()
	if calls[0].requestID == calls[1].requestID || calls[1].requestID == calls[2].requestID {
		t.Errorf("request IDs %q %q %q: want a new one per claim", calls[0].requestID, calls[1].requestID, calls[2].requestID)
	}
}

func TestRetryBudgetThrottlesRetries(t *testing.T) {
	doors := startFakeDoors(t, 2)
	doors.script(func(context.Context, doorCall) error { return doorStoreDown })
	const ratio, calls, maxAttempts = 0.5, 40, 8
	c := newTestClient(t, doors.addrs(), WithMaxAttempts(maxAttempts), WithRetryBudget(ratio, 0))
	ctx := testContext(t)

	var exhausted int
	for range calls {
		_, err := c.Claim(ctx, "spring", "lantern", AsUser("dave"))
		if !errors.Is(err, ErrUnavailable) || !IsRetryable(err) {
			t.Fatalf("err = %v, want a retryable ErrUnavailable", err)
		}
		if errors.Is(err, ErrRetryBudgetExhausted) {
			exhausted++
		}
	}
	// The budget starts with retryBudgetBurstMin tokens and earns ratio per
	// first try; without it the calls would make 40 * 7 = 280 retries.
	retries := len(doors.recorded()) - calls
	if limit := retryBudgetBurstMin + int(ratio*calls); retries > limit {
		t.Errorf("%d retries for %d calls, want at most %d", retries, calls, limit)
	}
	if retries < int(ratio*calls) {
		t.Errorf("%d retries for %d calls: the budget should pay for at least %d", retries, calls, int(ratio*calls))
	}
	st := c.Stats()
	if exhausted == 0 || st.BudgetExhausted != uint64(exhausted) {
		t.Errorf("%d calls ended for want of budget, Stats says %d; want some", exhausted, st.BudgetExhausted)
	}
	if st.Calls != calls || st.Retries != uint64(retries) || st.Attempts != uint64(len(doors.recorded())) {
		t.Errorf("Stats %+v, want %d calls, %d retries, %d attempts", st, calls, retries, len(doors.recorded()))
	}
}

func TestRetryBudgetArithmetic(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newRetryBudget(0.25, 2, func() time.Time { return now })
	for i := range 20 { // starts full: 10 seconds of 2 per second
		if !b.withdraw() {
			t.Fatalf("retry %d refused, want 20 from the starting balance", i+1)
		}
	}
	if b.withdraw() {
		t.Fatal("retry allowed with an empty budget")
	}
	for range 4 {
		b.firstTry()
	}
	if !b.withdraw() || b.withdraw() {
		t.Fatal("4 first tries at 0.25 should pay for exactly one retry")
	}
	now = now.Add(time.Second)
	if !b.withdraw() || !b.withdraw() || b.withdraw() {
		t.Fatal("one second at 2 per second should pay for exactly two retries")
	}
	now = now.Add(time.Hour)
	for range 1000 {
		b.firstTry()
	}
	n := 0
	for b.withdraw() {
		n++
	}
	if n != 20 {
		t.Errorf("after a long quiet spell %d retries, want the cap of 20", n)
	}
}

// TestCallDeadlineBoundsAClaim runs with the claim as a unary call and inside a ClaimMany call.
func TestCallDeadlineBoundsAClaim(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprint("batched=", batched), func(t *testing.T) { testCallDeadlineBoundsAClaim(t, batched) })
	}
}

func testCallDeadlineBoundsAClaim(t *testing.T, batched bool) {
	doors := startFakeDoors(t, 2)
	doors.setBatching(batched)
	doors.script(func(ctx context.Context, _ doorCall) error {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	})
	c := newTestClient(t, doors.addrs(), WithAttemptTimeout(0))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	// The door answers only when the call's context ends: a client that
	// did not end the call at its deadline would not return (the wait is a
	// minute, against a loaded machine, not a bound on the work).
	done := make(chan error, 1)
	go func() {
		_, err := c.Claim(ctx, "spring", "lantern", AsUser("erin"))
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("call still running a minute past its 100ms deadline")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
		t.Fatalf("err = %v, want a retryable context.DeadlineExceeded", err)
	}
	if n := len(doors.recorded()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// TestAttemptTimeoutResendsElsewhere runs with the claim as a unary call and inside a ClaimMany call.
func TestAttemptTimeoutResendsElsewhere(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprint("batched=", batched), func(t *testing.T) { testAttemptTimeoutResendsElsewhere(t, batched) })
	}
}

func testAttemptTimeoutResendsElsewhere(t *testing.T, batched bool) {
	doors := startFakeDoors(t, 2)
	doors.setBatching(batched)
	doors.script(func(ctx context.Context, c doorCall) error {
		if c.n == 1 {
			<-ctx.Done()
			return status.FromContextError(ctx.Err()).Err()
		}
		return nil
	})
	// The other door must answer within one attempt timeout: with 50 ms
	// under -race on a loaded machine the resend timed out too, and a third
	// attempt went back to the first door.
	c := newTestClient(t, doors.addrs(), WithAttemptTimeout(time.Second))

	if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser("frank")); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	calls := doors.recorded()
	if len(calls) != 2 || calls[0].door == calls[1].door || !calls[1].retry || calls[1].requestID != calls[0].requestID {
		t.Fatalf("calls %+v: want a resend of the same request ID on the other front door", calls)
	}
}

func TestDropFractionDropsCallsLocally(t *testing.T) {
	doors := startFakeDoors(t, 1)
	doors.setHeader(metadata.Pairs(mdDropFraction, "0.5"))
	c := newTestClient(t, doors.addrs())
	ctx := testContext(t)

	if _, err := c.Claim(ctx, "spring", "lantern", AsUser("gina")); err != nil {
		t.Fatalf("first Claim: %v", err)
	}
	const calls = 400
	dropped := 0
	for i := range calls {
		_, err := c.Claim(ctx, "spring", "lantern", AsUser(fmt.Sprint("u", i)))
		switch {
		case err == nil:
		case errors.Is(err, ErrDropped) && errors.Is(err, ErrOverloaded) && IsRetryable(err) && Reason(err) == reasonClientDropped:
			dropped++
		default:
			t.Fatalf("Claim: %v, want success or ErrDropped", err)
		}
	}
	sent := len(doors.recorded()) - 1
	if sent+dropped != calls {
		t.Fatalf("%d sent + %d dropped != %d calls", sent, dropped, calls)
	}
	if dropped < calls/4 || dropped > calls*3/4 {
		t.Errorf("dropped %d of %d at a fraction of 0.5", dropped, calls)
	}
	for _, call := range doors.recorded() {
		if call.md.Get(mdClientDrops) == nil {
			t.Fatal("a call did not tell the front door that the client drops by itself")
		}
	}
	if st := c.Stats(); st.Dropped != uint64(dropped) || st.DropFraction != 0.5 {
		t.Errorf("Stats %+v: want %d dropped at 0.5", st, dropped)
	}

	// Level 3 ends: the next answer carries no fraction, and nothing more
	// is dropped.
	doors.setHeader(nil)
	for range 20 {
		_, _ = c.Claim(ctx, "spring", "lantern", AsUser("gina"))
	}
	before := c.Stats().Dropped
	for range 50 {
		if _, err := c.Claim(ctx, "spring", "lantern", AsUser("gina")); err != nil {
			t.Fatalf("Claim after level 3 ended: %v", err)
		}
	}
	if c.Stats().Dropped != before {
		t.Error("calls dropped after the front door stopped asking")
	}
}

func TestDropFractionLapsesWithoutAnswers(t *testing.T) {
	var d dropper
	now := time.Unix(1000, 0)
	d.learn(metadata.Pairs(mdDropFraction, "1"), nil, now)
	if drop, f := d.drop(now.Add(time.Second)); !drop || f != 1 {
		t.Fatalf("drop = %v, %v; want every call dropped at 1", drop, f)
	}
	if drop, _ := d.drop(now.Add(dropHold)); drop {
		t.Error("a fraction of 1 still held after dropHold: the client would never ask again")
	}
	d.learn(nil, nil, now) // a connection error: no answer, nothing learnt
	if drop, _ := d.drop(now); !drop {
		t.Error("a failed connection reset the fraction")
	}
	d.learn(metadata.Pairs("content-type", "application/grpc"), nil, now)
	if drop, _ := d.drop(now); drop {
		t.Error("an answer without the header did not end the dropping")
	}
	d.learn(nil, metadata.Pairs(mdDropFraction, "garbage"), now)
	if drop, _ := d.drop(now); drop {
		t.Error("an unreadable fraction made the client drop")
	}
}

func TestCredentials(t *testing.T) {
	doors := startFakeDoors(t, 1)
	var asked int
	src := TokenFunc(func(context.Context) (string, error) { asked++; return "jwt-from-source", nil })
	c := newTestClient(t, doors.addrs(), WithTokenSource(src))
	ctx := testContext(t)

	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Claim(ctx, "spring", "lantern"))
	must(c.Claim(ctx, "spring", "lantern", BearerToken("users-own-jwt")))
	must(c.Claim(ctx, "spring", "lantern", AsUser("hana")))
	must(c.ListMyClaims(ctx, "spring", AsUser("hana")))
	calls := doors.recorded()
	want := []struct{ key, value string }{
		{mdAuthorization, "Bearer jwt-from-source"},
		{mdAuthorization, "Bearer users-own-jwt"},
		{mdUserID, "hana"},
		{mdUserID, "hana"},
	}
	for i, w := range want {
		if got := calls[i].md.Get(w.key); len(got) != 1 || got[0] != w.value {
			t.Errorf("call %d sent %s %q, want %q", i+1, w.key, got, w.value)
		}
	}
	if calls[2].md.Get(mdAuthorization) != nil {
		t.Error("AsUser also sent the token source's token")
	}
	if asked != 1 {
		t.Errorf("token source asked %d times, want once (only the call without credentials of its own)", asked)
	}

	failing := newTestClient(t, doors.addrs(), WithTokenSource(TokenFunc(func(context.Context) (string, error) {
		return "", errors.New("identity provider down")
	})))
	before := len(doors.recorded())
	if _, err := failing.Claim(ctx, "spring", "lantern"); err == nil || IsRetryable(err) {
		t.Errorf("err = %v, want a final error from the token source", err)
	}
	if len(doors.recorded()) != before {
		t.Error("a call was sent without its token")
	}
}

func TestCallsSpreadOverHealthyFrontDoors(t *testing.T) {
	doors := startFakeDoors(t, 3)
	doors.doors[1].setServing(false)
	c := newTestClient(t, doors.addrs(), WithHealthCheckInterval(20*time.Millisecond))
	ctx := testContext(t)

	perDoor := func() [3]int {
		var n [3]int
		for _, call := range doors.recorded() {
			n[call.door]++
		}
		return n
	}
	for range 30 {
		if _, err := c.GetItem(ctx, "spring", "lantern"); err != nil {
			t.Fatalf("GetItem: %v", err)
		}
	}
	if n := perDoor(); n[1] != 0 || n[0] < 10 || n[2] < 10 {
		t.Fatalf("calls per front door %v: want none on the unhealthy one, the rest spread", n)
	}
	if h := c.Stats().Healthy; h != 2 {
		t.Errorf("Stats.Healthy = %d, want 2", h)
	}

	// Door 1 recovers; door 0 fails its checks.
	doors.doors[1].setServing(true)
	doors.doors[0].setServing(false)
	deadline := time.Now().Add(5 * time.Second)
	for c.endpoints[1].unhealthy.Load() || !c.endpoints[0].unhealthy.Load() {
		if time.Now().After(deadline) {
			t.Fatal("health checks did not notice the change")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := perDoor()
	for range 30 {
		if _, err := c.GetItem(ctx, "spring", "lantern"); err != nil {
			t.Fatalf("GetItem: %v", err)
		}
	}
	if n := perDoor(); n[0] != before[0] || n[1] == before[1] {
		t.Errorf("calls per front door %v, before %v: want door 0 skipped and door 1 used again", n, before)
	}
}

func TestHealthCheckNamesTheFrontDoorService(t *testing.T) {
	if want := flashdpb.FrontDoor_ServiceDesc.ServiceName; frontDoorService != want {
		t.Errorf("health checks ask for %q, the service is %q", frontDoorService, want)
	}
}

func TestEveryFrontDoorUnhealthyStillTries(t *testing.T) {
	doors := startFakeDoors(t, 2)
	for _, d := range doors.doors {
		d.setServing(false)
	}
	c := newTestClient(t, doors.addrs())
	if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser("ivan")); err != nil {
		t.Fatalf("Claim with every front door failing its health check: %v", err)
	}
}

func TestFrontDoorFoundDownAtNewIsSkipped(t *testing.T) {
	doors := startFakeDoors(t, 1)
	// A long interval: only the call itself can mark the dead address.
	c := newTestClient(t, []string{deadAddr(t), doors.addrs()[0]}, WithHealthCheckInterval(time.Hour))
	ctx := testContext(t)
	for range 10 {
		if _, err := c.Claim(ctx, "spring", "lantern", AsUser("jo")); err != nil {
			t.Fatalf("Claim: %v", err)
		}
	}
	if st := c.Stats(); st.Attempts != 10 {
		t.Errorf("%d attempts for 10 claims: the dead front door, found at New, should never be tried", st.Attempts)
	}
}

func TestFrontDoorFoundDownByACallIsSkipped(t *testing.T) {
	doors := startFakeDoors(t, 2)
	doors.script(func(_ context.Context, c doorCall) error {
		if c.door == 0 {
			return doorConnRefused
		}
		return nil
	})
	// A long interval: only the failed call can mark front door 0.
	c := newTestClient(t, doors.addrs(), WithHealthCheckInterval(time.Hour))
	ctx := testContext(t)
	for range 10 {
		if _, err := c.Claim(ctx, "spring", "lantern", AsUser("lee")); err != nil {
			t.Fatalf("Claim: %v", err)
		}
	}
	n := 0
	for _, call := range doors.recorded() {
		if call.door == 0 {
			n++
		}
	}
	if n != 1 {
		t.Errorf("front door 0 got %d calls, want 1: after its failure the others skip it", n)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	doors := startFakeDoors(t, 2)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the servers stop after the test
	c, err := New(testContext(t), doors.addrs(), WithHealthCheckInterval(10*time.Millisecond))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser("kim")); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	time.Sleep(30 * time.Millisecond) // a few health rounds
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser("kim")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Claim after Close: %v, want ErrClosed", err)
	}
}

func TestNewValidates(t *testing.T) {
	addr := []string{"127.0.0.1:1"}
	tests := []struct {
		name  string
		addrs []string
		opts  []Option
	}{
		{"no endpoints", nil, nil},
		{"zero attempts", addr, []Option{WithMaxAttempts(0)}},
		{"negative budget ratio", addr, []Option{WithRetryBudget(-1, 10)}},
		{"budget ratio over the bound", addr, []Option{WithRetryBudget(retryBudgetRatioMax+1, 10)}},
		{"health checks too often", addr, []Option{WithHealthCheckInterval(time.Microsecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := New(testContext(t), tt.addrs, tt.opts...); err == nil {
				_ = c.Close()
				t.Fatal("New succeeded")
			}
		})
	}
	if s, err := NewStore(addr, WithTokenSource(StaticToken("x"))); err == nil {
		_ = s.Close()
		t.Error("NewStore took a front-door option")
	}
}

// A draw or a redemption resent after an attempt whose outcome is unknown
// says so, with the same request ID, so that the front door's hints (no
// draws left, the reward pool empty) let it through to the store.
func TestCardResendIsFlagged(t *testing.T) {
	for name, call := range map[string]func(*Client) (string, error){
		"DrawCard": func(c *Client) (string, error) {
			resp, err := c.DrawCard(testContext(t), "spring", AsUser("alice"))
			return resp.GetRequestId(), err
		},
		"RedeemSet": func(c *Client) (string, error) {
			resp, err := c.RedeemSet(testContext(t), "spring", AsUser("alice"))
			return resp.GetRequestId(), err
		},
	} {
		for _, batched := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batched=%v", name, batched), func(t *testing.T) { testCardResend(t, call, batched) })
		}
	}
}

func testCardResend(t *testing.T, call func(*Client) (string, error), batched bool) {
	doors := startFakeDoors(t, 1)
	doors.setBatching(batched)
	doors.failFirst(1, status.Error(codes.DeadlineExceeded, "slow"))
	c := newTestClient(t, doors.addrs(), WithBackoff(time.Millisecond, time.Millisecond), WithMaxAttempts(3), WithoutRetryBudget())
	answered, err := call(c)
	if err != nil {
		t.Fatal(err)
	}
	calls := doors.recorded()
	if len(calls) != 2 || calls[0].retry || !calls[1].retry {
		t.Fatalf("calls %+v: want a first attempt and a flagged resend", calls)
	}
	if id := calls[0].requestID; id == "" || calls[1].requestID != id || answered != id {
		t.Fatalf("request IDs %q, %q, answer %q", calls[0].requestID, calls[1].requestID, answered)
	}
}

// Resume flags every attempt as a resend, the first included: the call it
// goes on with may have been applied, and the front door must ask the
// store. RequestID alone names a new call.
func TestResumeFlagsTheFirstAttempt(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprint("batched=", batched), func(t *testing.T) {
			doors := startFakeDoors(t, 1)
			doors.setBatching(batched)
			c := newTestClient(t, doors.addrs())
			if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser("ann"), RequestID("fresh-id")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser("ann"), Resume("earlier-id")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.RedeemSet(testContext(t), "spring", AsUser("ann"), Resume("earlier-redeem")); err != nil {
				t.Fatal(err)
			}
			calls := doors.recorded()
			if len(calls) != 3 {
				t.Fatalf("%d calls, want 3", len(calls))
			}
			for i, want := range []struct {
				id    string
				retry bool
			}{{"fresh-id", false}, {"earlier-id", true}, {"earlier-redeem", true}} {
				if calls[i].requestID != want.id || calls[i].retry != want.retry {
					t.Errorf("call %d: request ID %q retry %v, want %q %v", i, calls[i].requestID, calls[i].retry, want.id, want.retry)
				}
			}
		})
	}
}

// A call that gave up says whether it may have been applied: only when an
// attempt's outcome was unknown (timed out, connection or store lost after
// sending), never when every attempt was refused before any work.
func TestMayHaveApplied(t *testing.T) {
	tests := []struct {
		name   string
		answer func(ctx context.Context, c doorCall) error
		want   bool
	}{
		{"overloaded every time", func(context.Context, doorCall) error { return doorQueueFull }, false},
		{"shutting down every time", func(context.Context, doorCall) error { return doorShuttingDown }, false},
		{"store lost behind the door", func(context.Context, doorCall) error { return doorStoreDown }, true},
		{"a deadline, then overloaded", func(_ context.Context, c doorCall) error {
			if c.n == 1 {
				return doorDeadline
			}
			return doorQueueFull
		}, true},
		{"the call's context ends during an attempt", func(ctx context.Context, _ doorCall) error {
			<-ctx.Done()
			return status.FromContextError(ctx.Err()).Err()
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doors := startFakeDoors(t, 2)
			doors.script(tt.answer)
			c := newTestClient(t, doors.addrs(), WithBackoff(time.Millisecond, 2*time.Millisecond), WithMaxAttempts(3), WithoutRetryBudget())
			ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
			defer cancel()
			_, err := c.Claim(ctx, "spring", "lantern", AsUser("ann"))
			if err == nil || !IsRetryable(err) {
				t.Fatalf("err = %v, want a retryable failure", err)
			}
			if got := MayHaveApplied(err); got != tt.want {
				t.Errorf("MayHaveApplied(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}
}
