package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// Batching: a Client multiplexes the Claim (and DrawCard) calls its
// goroutines make at the same time onto FrontDoor.ClaimMany (DrawMany)
// calls, one queue per front door and kind, the way the front door
// coalesces claims onto the store's log. An attempt that finds fewer than
// callsInFlight calls on their way leaves at once, alone; the others wait
// for the next call to return and leave together with whatever queued
// meanwhile (group commit). So a lone claim waits for nothing, and under
// load one RPC carries up to claimsPerCall claims: an RPC costs tens of
// microseconds of CPU on each side, far more than the claim it carries.
const (
	defaultClaimsPerCall = 256
	defaultCallsInFlight = 4
	claimQueueMax        = 8192 // attempts waiting for a call, per front door and kind
	claimsPerCallMax     = 1024 // the front door's ClaimMany and DrawMany limit
)

// errManyUnsupported: the front door does not know ClaimMany or DrawMany
// (an older version). The call goes as a unary one, and so does every
// later one of its kind to that front door.
var errManyUnsupported = status.Error(codes.Unimplemented, "front door has no ClaimMany or DrawMany")

// errAttemptExpired: the attempt's deadline passed while the claim waited
// for its call; nothing was sent.
var errAttemptExpired = status.Error(codes.DeadlineExceeded, "attempt timed out waiting for a call to the front door")

// errQueueFull: calls arrive faster than the front door answers.
var errQueueFull = newError(status.Error(codes.ResourceExhausted, "client queue to the front door is full"))

// answer is one entry's outcome: the unary call's answer, or its error.
type answer[A any] struct {
	value A
	err   error
}

// manyCall sends entries as one ClaimMany or DrawMany call and returns one
// answer per entry, in order, or the call's error.
type manyCall[E, A any] func(ctx context.Context, entries []E, opts ...grpc.CallOption) ([]answer[A], error)

// batcher sends the entries (claims, or card draws) queued for one front
// door as ClaimMany or DrawMany calls.
type batcher[E, A any] struct {
	call        manyCall[E, A]
	perCall     int
	callTimeout time.Duration
	learn       func(header, trailer metadata.MD) // degradation level 3

	queue       chan *queued[E, A]
	slots       chan struct{} // one token per call in flight
	unsupported atomic.Bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// queued is one attempt waiting for its call.
type queued[E, A any] struct {
	entry    E
	deadline time.Time      // the attempt's; zero: none
	done     chan answer[A] // buffered: the sender never blocks
	state    atomic.Int32
}

// States of a queued attempt: the sender (queued → sent) and the caller
// giving up (queued → abandoned) race; the winner decides.
const (
	attemptQueued int32 = iota
	attemptSent
	attemptAbandoned
)

func newBatcher[E, A any](call manyCall[E, A], o *options, learn func(header, trailer metadata.MD)) *batcher[E, A] {
	timeout := o.attemptTimeout
	if timeout == 0 {
		timeout = o.callTimeout
	}
	b := &batcher[E, A]{
		call: call, perCall: o.claimsPerCall, callTimeout: timeout, learn: learn,
		queue: make(chan *queued[E, A], claimQueueMax),
		slots: make(chan struct{}, o.callsInFlight),
		stop:  make(chan struct{}),
	}
	b.wg.Add(1)
	go b.run()
	return b
}

// close stops the dispatcher, refuses what is queued, and waits for the
// calls in flight (their connection is being closed, or they time out).
func (b *batcher[E, A]) close() {
	close(b.stop)
	b.wg.Wait()
}

// send queues one attempt and waits for its answer or for ctx to end. The
// attempt's deadline needs no timer of its own: an attempt still queued at
// its deadline is answered DEADLINE_EXCEEDED when its call is formed, and
// a call in flight ends within the attempt timeout. So an attempt ends by
// its deadline once sent, and at worst one attempt timeout after it while
// every call ahead of it hangs.
func (b *batcher[E, A]) send(ctx context.Context, e E, deadline time.Time) (A, error) {
	q := &queued[E, A]{entry: e, deadline: deadline, done: make(chan answer[A], 1)}
	var zero A
	select {
	case b.queue <- q:
	default:
		return zero, errQueueFull
	}
	select {
	case a := <-q.done:
		return a.value, a.err
	case <-ctx.Done():
		// Sent or not, the caller hears nothing: a retry with the same
		// request ID learns the outcome from the store.
		q.state.CompareAndSwap(attemptQueued, attemptAbandoned)
		return zero, status.FromContextError(ctx.Err()).Err()
	case <-b.stop:
		// Closed: an attempt queued after the dispatcher's last look at
		// the queue would wait for ctx. One not yet sent is never sent;
		// one in a call gets that call's answer (its connection is closed).
		if q.state.CompareAndSwap(attemptQueued, attemptAbandoned) {
			return zero, ErrClosed
		}
		a := <-q.done
		return a.value, a.err
	}
}

// run forms calls: it waits for an attempt and a free slot, then takes
// every attempt queued by then, up to a full call.
func (b *batcher[E, A]) run() {
	defer b.wg.Done()
	defer b.refuseQueued()
	for {
		var first *queued[E, A]
		select {
		case first = <-b.queue:
		case <-b.stop:
			return
		}
		select {
		case b.slots <- struct{}{}:
		case <-b.stop:
			first.done <- answer[A]{err: ErrClosed}
			return
		}
		batch := []*queued[E, A]{first}
	fill:
		for len(batch) < b.perCall {
			select {
			case q := <-b.queue:
				batch = append(batch, q)
			default:
				break fill
			}
		}
		b.wg.Add(1)
		go b.sendCall(batch)
	}
}

// sendCall makes one call for the attempts of batch not abandoned nor
// expired, and answers each.
func (b *batcher[E, A]) sendCall(batch []*queued[E, A]) {
	defer b.wg.Done()
	defer func() { <-b.slots }()
	entries := make([]E, 0, len(batch))
	sent := batch[:0]
	now := time.Now()
	for _, q := range batch {
		if !q.state.CompareAndSwap(attemptQueued, attemptSent) {
			continue // abandoned
		}
		if !q.deadline.IsZero() && !now.Before(q.deadline) {
			q.done <- answer[A]{err: errAttemptExpired}
			continue
		}
		entries = append(entries, q.entry)
		sent = append(sent, q)
	}
	if len(sent) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.callTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, mdClientDrops, "1")
	var header, trailer metadata.MD
	answers, err := b.call(ctx, entries, grpc.Header(&header), grpc.Trailer(&trailer))
	b.learn(header, trailer)
	switch {
	case status.Code(err) == codes.Unimplemented:
		b.unsupported.Store(true)
		err = errManyUnsupported
	case err == nil && len(answers) != len(sent):
		err = status.Error(codes.Internal, fmt.Sprintf("front door answered %d outcomes for %d entries", len(answers), len(sent)))
	}
	for i, q := range sent {
		if err != nil {
			q.done <- answer[A]{err: err}
		} else {
			q.done <- answers[i]
		}
	}
}

// refuseQueued answers every attempt still queued when the client closes.
func (b *batcher[E, A]) refuseQueued() {
	for {
		select {
		case q := <-b.queue:
			q.done <- answer[A]{err: ErrClosed}
		default:
			return
		}
	}
}

// claimMany is the ClaimMany call of a claims batcher.
func claimMany(fd flashdpb.FrontDoorClient) manyCall[*flashdpb.ClaimManyEntry, *flashdpb.Claim] {
	return func(ctx context.Context, entries []*flashdpb.ClaimManyEntry, opts ...grpc.CallOption) ([]answer[*flashdpb.Claim], error) {
		resp, err := fd.ClaimMany(ctx, &flashdpb.ClaimManyRequest{Claims: entries}, opts...)
		if err != nil {
			return nil, err
		}
		out := make([]answer[*flashdpb.Claim], len(resp.GetOutcomes()))
		for i, o := range resp.GetOutcomes() {
			out[i] = answer[*flashdpb.Claim]{value: o.GetClaim(), err: o.GetError().Err()}
		}
		return out, nil
	}
}

// drawMany is the DrawMany call of a draws batcher.
func drawMany(fd flashdpb.FrontDoorClient) manyCall[*flashdpb.DrawManyEntry, *flashdpb.DrawCardResponse] {
	return func(ctx context.Context, entries []*flashdpb.DrawManyEntry, opts ...grpc.CallOption) ([]answer[*flashdpb.DrawCardResponse], error) {
		resp, err := fd.DrawMany(ctx, &flashdpb.DrawManyRequest{Draws: entries}, opts...)
		if err != nil {
			return nil, err
		}
		out := make([]answer[*flashdpb.DrawCardResponse], len(resp.GetOutcomes()))
		for i, o := range resp.GetOutcomes() {
			out[i] = answer[*flashdpb.DrawCardResponse]{value: o.GetDraw(), err: o.GetError().Err()}
		}
		return out, nil
	}
}
