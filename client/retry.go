package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
)

// attempt is what a call learns of the attempt it is about to make.
type attempt struct {
	n int // 1 for the first try
	// resend: an earlier attempt may have been applied without its answer
	// reaching the client (it timed out or lost its connection).
	resend bool
	// deadline ends the attempt (the attempt timeout), zero if none. A
	// self-timed call honours it itself; otherwise its ctx carries it.
	deadline time.Time
}

// router decides, for one kind of client, where the retries of a call go.
type router interface {
	// next returns the endpoint for the attempt after failure e on ep, and
	// how long to pause before it.
	next(st *retryState, ep *endpoint, e *Error) (*endpoint, time.Duration)
	// succeeded is told which endpoint answered.
	succeeded(ep *endpoint)
}

// retryState is what one call has learnt from its failed attempts.
type retryState struct {
	down   []*endpoint // found down: unreachable, or shutting down
	hops   int         // moves to another endpoint since the last pause
	rounds int         // pauses so far
}

// retry runs call, first on ep, until it succeeds, fails for good, runs
// out of attempts or of retry budget (nil: unlimited), or ctx ends. Where
// each retry goes follows r. call must send the same request (and request
// ID) every time. Each attempt gets a ctx bounded by the attempt timeout,
// unless selfTimed: then call bounds the attempt by attempt.deadline
// itself, which spares it a timer and a context when it waits in a queue
// whose sender bounds it anyway (batched claims).
func retry(ctx context.Context, o *options, budget *retryBudget, r router, ep *endpoint, selfTimed bool,
	call func(context.Context, *endpoint, attempt) error,
) error {
	ctx, cancel := bounded(ctx, o.callTimeout)
	defer cancel()
	budget.firstTry()
	var (
		last  *Error // the latest failure not caused by ctx ending
		state retryState
		at    attempt
	)
	for at.n = 1; ; at.n++ {
		var err error
		if selfTimed {
			if o.attemptTimeout > 0 {
				at.deadline = time.Now().Add(o.attemptTimeout)
			}
			err = call(ctx, ep, at)
		} else {
			err = runAttempt(ctx, o.attemptTimeout, func(ctx context.Context) error { return call(ctx, ep, at) })
		}
		if err == nil {
			r.succeeded(ep)
			return nil
		}
		e := newError(err)
		if !e.retryable() {
			return e
		}
		at.resend = at.resend || e.outcomeUnknown()
		if ctx.Err() != nil {
			return unfinished(at, giveUp(ctx, at.n, e, last))
		}
		last = e
		if at.n >= o.maxAttempts {
			return unfinished(at, fmt.Errorf("gave up after %d attempts: %w", at.n, e))
		}
		var pause time.Duration
		ep, pause = r.next(&state, ep, e)
		if deadline, ok := ctx.Deadline(); ok && pause > 0 && time.Until(deadline) < pause {
			return unfinished(at, fmt.Errorf("gave up after %d attempts, no time left to retry: %w", at.n, e))
		}
		if !budget.withdraw() {
			return unfinished(at, fmt.Errorf("%w after %d attempts: %w", ErrRetryBudgetExhausted, at.n, e))
		}
		if pause > 0 {
			if err := sleep(ctx, pause); err != nil {
				return unfinished(at, giveUp(ctx, at.n, e, last))
			}
		}
	}
}

// unfinished is the error of a call that gave up before a definite
// answer: marked as maybe applied when an attempt's outcome was unknown.
func unfinished(at attempt, err error) error {
	if at.resend {
		return &maybeAppliedError{err}
	}
	return err
}

// maybeAppliedError marks the error of a call that may have been applied
// (see MayHaveApplied).
type maybeAppliedError struct{ err error }

func (e *maybeAppliedError) Error() string { return e.err.Error() }
func (e *maybeAppliedError) Unwrap() error { return e.err }

// MayHaveApplied reports whether a call that failed may still have been
// applied by the store: one of its attempts timed out or lost its
// connection after it was sent. Go on with such a call with Resume and its
// request ID, so that the front door asks the store for the first answer
// to that ID instead of answering from its caches. Otherwise nothing was
// applied: a later call may use the same ID with RequestID, or a new one.
func MayHaveApplied(err error) bool {
	var m *maybeAppliedError
	return errors.As(err, &m)
}

// bounded gives a ctx without a deadline the call timeout.
func bounded(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// runAttempt runs call once, bounded by the attempt timeout if there is one.
func runAttempt(ctx context.Context, timeout time.Duration, call func(context.Context) error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return call(ctx)
}

// backoff returns the pause after the given number of earlier pauses:
// base, doubled each time, at most max.
func (o *options) backoff(rounds int) time.Duration {
	d := o.backoffBase
	for i := 0; i < rounds && d < o.backoffMax; i++ {
		d *= 2
	}
	return min(d, o.backoffMax)
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

// fullJitter returns the hint plus a random share, from none to all, of
// window: clients refused together spread over the whole window instead of
// coming back together the moment the hint has passed.
func fullJitter(hint, window time.Duration) time.Duration {
	return hint + rand.N(max(window, hint)+1)
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
