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
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.callTimeout)
		defer cancel()
	}
	ep, err := s.first(r)
	if err != nil {
		return err
	}
	var (
		last   *Error // the latest failure not caused by ctx ending
		hops   int    // moves to another node since the last pause
		rounds int    // pauses so far
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
		if e.Code == codes.ResourceExhausted || e.RetryAfter > 0 && e.leaderHint() == "" {
			// Overloaded, or a leader not ready yet: the same node, once
			// the server's hint has passed.
			pause = afterHint(max(e.RetryAfter, s.backoff(rounds)))
			rounds++
		} else {
			next := s.hinted(ep, e)
			if next == nil {
				s.doubtLeader(ep)
				next = s.after(ep)
			}
			ep = next
			if hops++; hops >= s.endpointCount() {
				pause = jittered(s.backoff(rounds))
				hops = 0
				rounds++
			}
		}
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
// if e carries no usable hint.
func (s *Store) hinted(ep *endpoint, e *Error) *endpoint {
	hint := e.leaderHint()
	if hint == "" || hint == ep.addr {
		return nil
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
