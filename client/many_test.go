package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Claims made at the same time share ClaimMany calls, and each gets its
// own answer: its own request ID and its own user.
func TestConcurrentClaimsShareCalls(t *testing.T) {
	testConcurrentCallsShare(t, 400, func(c *Client, i int) error {
		user := fmt.Sprint("user-", i)
		claim, err := c.Claim(testContext(t), "spring", "lantern", AsUser(user))
		if err == nil && claim.GetUserId() != user {
			err = fmt.Errorf("%s got the claim of %q", user, claim.GetUserId())
		}
		return err
	})
}

// Draws made at the same time share DrawMany calls as claims share
// ClaimMany calls, each with its own answer.
func TestConcurrentDrawsShareCalls(t *testing.T) {
	testConcurrentCallsShare(t, 100, func(c *Client, i int) error {
		id := fmt.Sprint("draw-", i)
		resp, err := c.DrawCard(testContext(t), "spring", AsUser(fmt.Sprint("user-", i)), RequestID(id))
		if err == nil && resp.GetRequestId() != id {
			err = fmt.Errorf("draw %s answered with %q", id, resp.GetRequestId())
		}
		return err
	})
}

// testConcurrentCallsShare makes n calls at once against a slow batching
// front door: they must travel in far fewer than n calls, each carried
// once, each answered as its own.
func testConcurrentCallsShare(t *testing.T, n int, call func(c *Client, i int) error) {
	doors := startFakeDoors(t, 1)
	doors.setBatching(true)
	doors.script(func(context.Context, doorCall) error { time.Sleep(10 * time.Millisecond); return nil })
	c := newTestClient(t, doors.addrs())
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := call(c, i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	calls, sizes := doors.batchCalls()
	total := 0
	for _, k := range sizes {
		total += k
	}
	if total != n {
		t.Fatalf("the calls carried %d entries, want %d", total, n)
	}
	if calls > n/4 {
		t.Errorf("%d entries took %d calls: not shared (sizes %v)", n, calls, sizes)
	}
	seen := map[string]bool{}
	for _, rec := range doors.recorded() {
		if seen[rec.requestID] {
			t.Fatalf("request ID %s sent twice", rec.requestID)
		}
		seen[rec.requestID] = true
	}
}

// A front door without ClaimMany (an older version) is asked once; then
// every claim to it is a unary Claim call.
func TestClaimManyUnsupportedFallsBackToUnary(t *testing.T) {
	doors := startFakeDoors(t, 1)
	c := newTestClient(t, doors.addrs())
	for i := range 3 {
		if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser(fmt.Sprint("u", i))); err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	if many, _ := doors.batchCalls(); many != 1 {
		t.Errorf("ClaimMany tried %d times, want once", many)
	}
	if n := len(doors.recorded()); n != 3 {
		t.Errorf("%d unary claims served, want 3", n)
	}
	if st := c.Stats(); st.Attempts != 3 || st.Retries != 0 {
		t.Errorf("stats %+v: the fallback is part of the first attempt, not a retry", st)
	}
}

// A claim whose caller gave up while it waited for a call is not sent.
func TestAbandonedClaimIsNotSent(t *testing.T) {
	doors := startFakeDoors(t, 1)
	doors.setBatching(true)
	release := make(chan struct{})
	doors.script(func(ctx context.Context, c doorCall) error {
		if c.n == 1 {
			<-release
		}
		return nil
	})
	c := newTestClient(t, doors.addrs(), WithClaimBatching(16, 1), WithMaxAttempts(1))
	first := make(chan error, 1)
	go func() {
		_, err := c.Claim(testContext(t), "spring", "lantern", AsUser("first"))
		first <- err
	}()
	waitUntil(t, func() bool { return len(doors.recorded()) == 1 })
	ctx, cancel := context.WithTimeout(testContext(t), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Claim(ctx, "spring", "lantern", AsUser("impatient")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient claim: %v, want a deadline", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Claim(testContext(t), "spring", "lantern", AsUser("last")); err != nil {
		t.Fatal(err)
	}
	if _, sizes := doors.batchCalls(); fmt.Sprint(sizes) != "[1 1]" {
		t.Errorf("call sizes %v, want [1 1]: the abandoned claim was sent", sizes)
	}
}

// Close answers the claims waiting for a call at once and stops every
// goroutine (TestMain checks for leaks). The claims' context lasts a
// minute: a claim Close left waiting would end DEADLINE_EXCEEDED (the test
// timed it instead, and a claim racing Close waited for its 10 s context on
// a loaded machine).
func TestCloseAnswersQueuedClaims(t *testing.T) {
	doors := startFakeDoors(t, 1)
	doors.setBatching(true)
	release := make(chan struct{})
	defer close(release)
	doors.script(func(ctx context.Context, _ doorCall) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	c, err := New(testContext(t), doors.addrs(), WithClaimBatching(4, 1), WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			_, err := c.Claim(ctx, "spring", "lantern", AsUser(fmt.Sprint("u", i)))
			errs <- err
		}()
	}
	waitUntil(t, func() bool { return len(doors.recorded()) >= 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		switch err := <-errs; {
		case err == nil:
			t.Error("a claim succeeded though the client closed before its answer")
		case errors.Is(err, context.DeadlineExceeded):
			t.Errorf("a claim waited for its deadline after Close: %v", err)
		}
	}
}

func TestClaimBatchingOptionsValidated(t *testing.T) {
	for _, opt := range []Option{WithClaimBatching(claimsPerCallMax+1, 1), WithClaimBatching(-1, 1), WithClaimBatching(8, 0)} {
		if _, err := New(testContext(t), []string{"127.0.0.1:1"}, opt); err == nil {
			t.Error("bad claim batching accepted")
		}
	}
	if _, err := NewStore([]string{"127.0.0.1:1"}, WithClaimBatching(8, 1)); err == nil {
		t.Error("NewStore accepted a front-door option")
	}
}

// waitUntil polls cond until it holds, for at most 5 seconds.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
	}
}

// TestSendAfterCloseIsRefused: an attempt queued after its batcher closed
// (a Claim that checked the client was open just before Close) is answered
// ErrClosed at once, not left waiting for its context to end.
func TestSendAfterCloseIsRefused(t *testing.T) {
	o := defaultFrontDoorOptions()
	call := func(context.Context, []int, ...grpc.CallOption) ([]answer[int], error) {
		return nil, errors.New("no call is made after the close")
	}
	b := newBatcher[int, int](call, &o, func(_, _ metadata.MD) {})
	b.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.send(ctx, 1, time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v, want ErrClosed", err)
	}
}
