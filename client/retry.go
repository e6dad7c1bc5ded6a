package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
)

// do runs call until it succeeds, fails for good, runs out of attempts or
// ctx ends. Which node each attempt goes to follows the retry policy in
// DESIGN.md. call must send the same request (and request ID) every time.
func (s *Store) do(ctx context.Context, r route, call func(context.Context, *endpoint) error) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	ep, err := s.first(r)
	if err != nil {
		return err
	}
	var (
		last  *Error // the latest failure not caused by ctx ending
		state retryState
	)
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, ep, call)
		if err == nil {
			if r == routeLeader {
				s.believeLeader(ep)
			}
			return nil
		}
		e := newError(err)
		if !e.retryable() {
			return e
		}
		if ctx.Err() != nil {
			return giveUp(ctx, attempt, e, last)
		}
		last = e
		if attempt >= s.opts.maxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, e)
		}
		var pause time.Duration
		ep, pause = s.retryAfter(&state, ep, e)
		if pause == 0 {
			continue
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
			return fmt.Errorf("gave up after %d attempts, no time left to retry: %w", attempt, e)
		}
		if err := sleep(ctx, pause); err != nil {
			return giveUp(ctx, attempt, e, last)
		}
	}
}

// retryState is what one call has learnt from its failed attempts.
type retryState struct {
	down   []*endpoint // nodes found down: unreachable, or shutting down
	hops   int         // moves to another node since the last pause
	rounds int         // pauses so far
}

// retryAfter decides, after attempt failure e on ep, which node the next
// attempt goes to and how long to pause first.
func (s *Store) retryAfter(st *retryState, ep *endpoint, e *Error) (*endpoint, time.Duration) {
	var pause time.Duration
	notLeader := e.Reason == reasonNotLeader
	switch {
	case e.Code == codes.ResourceExhausted || e.RetryAfter > 0 && !notLeader:
		// Overloaded, or a leader not ready yet: the same node, once the
		// server's hint has passed.
		pause = afterHint(max(e.RetryAfter, s.backoff(st.rounds)))
	case notLeader:
		s.doubtLeader(ep)
		if next := s.hinted(ep, e, st.down); next != nil {
			ep = next
			st.hops++
			break
		}
		// No leader known, or only one that is down: an election is under
		// way. Give it time, then ask the next node.
		ep = s.after(ep, st.down)
		pause = jittered(s.backoff(st.rounds))
	default:
		// The node is down or too slow: the next one. One that is down is
		// skipped for the rest of the call, unless every node is.
		s.doubtLeader(ep)
		if e.Code == codes.Unavailable {
			st.down = append(st.down, ep)
		}
		ep = s.after(ep, st.down)
		st.hops++
	}
	if st.hops >= s.endpointCount() {
		// Every node had its turn: pause before the next round.
		pause = jittered(s.backoff(st.rounds))
	}
	if pause > 0 {
		st.hops = 0
		st.rounds++
	}
	return ep, pause
}

// bounded gives a ctx without a deadline the call timeout.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.callTimeout)
}

// attempt runs call once, bounded by the attempt timeout if there is one.
func (s *Store) attempt(ctx context.Context, ep *endpoint, call func(context.Context, *endpoint) error) error {
	if s.opts.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.attemptTimeout)
		defer cancel()
	}
	return call(ctx, ep)
}

// hinted returns the leader a NOT_LEADER refusal from ep points at, or nil
// if it points nowhere, at ep itself, or at a node that is down.
func (s *Store) hinted(ep *endpoint, e *Error, down []*endpoint) *endpoint {
	hint := e.leaderHint()
	if hint == "" || hint == ep.addr {
		return nil
	}
	for _, d := range down {
		if d.addr == hint {
			return nil
		}
	}
	return s.followHint(hint)
}

func (s *Store) endpointCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.endpoints)
}

// backoff returns the pause after the given number of earlier pauses:
// base, doubled each time, at most max.
func (s *Store) backoff(rounds int) time.Duration {
	d := s.opts.backoffBase
	for i := 0; i < rounds && d < s.opts.backoffMax; i++ {
		d *= 2
	}
	return min(d, s.opts.backoffMax)
}

// jittered returns a random duration in [d/2, d), so that clients that
// failed together do not retry together.
func jittered(d time.Duration) time.Duration {
	half := d / 2
	return half + rand.N(d-half)
}

// afterHint returns d plus up to a fifth of it: a server's retry-after hint
// is a minimum.
func afterHint(d time.Duration) time.Duration {
	return d + rand.N(d/5+1)
}

// giveUp reports a call whose ctx ended: e is the failure of the latest
// attempt, last the one before it, if any. The message keeps the latest
// failure that says more than "deadline exceeded".
func giveUp(ctx context.Context, attempts int, e, last *Error) error {
	if e.Code == codes.DeadlineExceeded || e.Code == codes.Canceled {
		if last == nil {
			return e
		}
		e = last
	}
	return fmt.Errorf("%w after %d attempts, last error: %w", ctx.Err(), attempts, e)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
