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

// Claim batching: a Client multiplexes the Claim calls its goroutines make
// at the same time onto FrontDoor.ClaimMany calls, one queue per front
// door, the way the front door coalesces claims onto the store's log. A
// claim that finds fewer than callsInFlight calls on their way leaves at
// once, alone; the others wait for the next call to return and leave
// together with whatever queued meanwhile (group commit). So a lone claim
// waits for nothing, and under load one RPC carries up to claimsPerCall
// claims: an RPC costs tens of microseconds of CPU on each side, far more
// than the claim it carries.
const (
	defaultClaimsPerCall = 256
	defaultCallsInFlight = 4
	claimQueueMax        = 8192 // claims waiting for a call, per front door
	claimsPerCallMax     = 1024 // the front door's ClaimMany limit
)

// errClaimManyUnsupported: the front door does not know ClaimMany (an
// older version). The claim goes as a unary Claim, and so does every later
// one to that front door.
var errClaimManyUnsupported = status.Error(codes.Unimplemented, "front door has no ClaimMany")

// errAttemptExpired: the attempt's deadline passed while the claim waited
// for its call; nothing was sent.
var errAttemptExpired = status.Error(codes.DeadlineExceeded, "claim attempt timed out waiting for a call to the front door")

// errClaimQueueFull: claims arrive faster than the front door answers.
var errClaimQueueFull = newError(status.Error(codes.ResourceExhausted, "client claim queue to the front door is full"))

// claimBatcher sends the claims queued for one front door as ClaimMany
// calls.
type claimBatcher struct {
	frontDoor     flashdpb.FrontDoorClient
	claimsPerCall int
	callTimeout   time.Duration
	learn         func(header, trailer metadata.MD) // degradation level 3

	queue       chan *queuedClaim
	slots       chan struct{} // one token per call in flight
	unsupported atomic.Bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// queuedClaim is one attempt of a Claim waiting for its ClaimMany call.
type queuedClaim struct {
	entry    *flashdpb.ClaimManyEntry
	deadline time.Time        // the attempt's; zero: none
	done     chan claimAnswer // buffered: the sender never blocks
	state    atomic.Int32
}

type claimAnswer struct {
	claim *flashdpb.Claim
	err   error
}

// States of a queuedClaim: the sender (queued → sent) and the caller
// giving up (queued → abandoned) race; the winner decides.
const (
	claimQueued int32 = iota
	claimSent
	claimAbandoned
)

func newClaimBatcher(fd flashdpb.FrontDoorClient, o *options, learn func(header, trailer metadata.MD)) *claimBatcher {
	timeout := o.attemptTimeout
	if timeout == 0 {
		timeout = o.callTimeout
	}
	b := &claimBatcher{
		frontDoor: fd, claimsPerCall: o.claimsPerCall, callTimeout: timeout, learn: learn,
		queue: make(chan *queuedClaim, claimQueueMax),
		slots: make(chan struct{}, o.callsInFlight),
		stop:  make(chan struct{}),
	}
	b.wg.Add(1)
	go b.run()
	return b
}

// close stops the dispatcher, refuses what is queued, and waits for the
// calls in flight (their connection is being closed, or they time out).
func (b *claimBatcher) close() {
	close(b.stop)
	b.wg.Wait()
}

// claim queues one attempt and waits for its outcome or for ctx to end.
// The attempt's deadline needs no timer of its own: a claim still queued
// at its deadline is answered DEADLINE_EXCEEDED when its call is formed,
// and a call in flight ends within the attempt timeout. So an attempt ends
// by its deadline once sent, and at worst one attempt timeout after it
// while every call ahead of it hangs.
func (b *claimBatcher) claim(ctx context.Context, e *flashdpb.ClaimManyEntry, deadline time.Time) (*flashdpb.Claim, error) {
	q := &queuedClaim{entry: e, deadline: deadline, done: make(chan claimAnswer, 1)}
	select {
	case b.queue <- q:
	default:
		return nil, errClaimQueueFull
	}
	select {
	case a := <-q.done:
		return a.claim, a.err
	case <-ctx.Done():
		// Sent or not, the caller hears nothing: a retry with the same
		// request ID learns the outcome from the store.
		q.state.CompareAndSwap(claimQueued, claimAbandoned)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// run forms calls: it waits for a claim and a free slot, then takes every
// claim queued by then, up to a full call.
func (b *claimBatcher) run() {
	defer b.wg.Done()
	defer b.refuseQueued()
	for {
		var first *queuedClaim
		select {
		case first = <-b.queue:
		case <-b.stop:
			return
		}
		select {
		case b.slots <- struct{}{}:
		case <-b.stop:
			answer(first, claimAnswer{err: ErrClosed})
			return
		}
		batch := []*queuedClaim{first}
	fill:
		for len(batch) < b.claimsPerCall {
			select {
			case q := <-b.queue:
				batch = append(batch, q)
			default:
				break fill
			}
		}
		b.wg.Add(1)
		go b.send(batch)
	}
}

// send makes one ClaimMany call for the claims of batch not abandoned, and
// answers each.
func (b *claimBatcher) send(batch []*queuedClaim) {
	defer b.wg.Done()
	defer func() { <-b.slots }()
	req := &flashdpb.ClaimManyRequest{Claims: make([]*flashdpb.ClaimManyEntry, 0, len(batch))}
	sent := batch[:0]
	now := time.Now()
	for _, q := range batch {
		if !q.state.CompareAndSwap(claimQueued, claimSent) {
			continue // abandoned
		}
		if !q.deadline.IsZero() && !now.Before(q.deadline) {
			answer(q, claimAnswer{err: errAttemptExpired})
			continue
		}
		req.Claims = append(req.Claims, q.entry)
		sent = append(sent, q)
	}
	if len(sent) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.callTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, mdClientDrops, "1")
	var header, trailer metadata.MD
	resp, err := b.frontDoor.ClaimMany(ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
	b.learn(header, trailer)
	switch {
	case status.Code(err) == codes.Unimplemented:
		b.unsupported.Store(true)
		err = errClaimManyUnsupported
	case err == nil && len(resp.GetOutcomes()) != len(sent):
		err = status.Error(codes.Internal, fmt.Sprintf("front door answered %d outcomes for %d claims", len(resp.GetOutcomes()), len(sent)))
	}
	for i, q := range sent {
		if err != nil {
			answer(q, claimAnswer{err: err})
			continue
		}
		o := resp.GetOutcomes()[i]
		answer(q, claimAnswer{claim: o.GetClaim(), err: o.GetError().Err()})
	}
}

func answer(q *queuedClaim, a claimAnswer) { q.done <- a }

// refuseQueued answers every claim still queued when the client closes.
func (b *claimBatcher) refuseQueued() {
	for {
		select {
		case q := <-b.queue:
			answer(q, claimAnswer{err: ErrClosed})
		default:
			return
		}
	}
}
