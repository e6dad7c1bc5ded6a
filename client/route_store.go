package client

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
)

// do runs call under the retry policy for store nodes (DESIGN.md).
func (s *Store) do(ctx context.Context, r route, call func(context.Context, *endpoint) error) error {
	ep, err := s.first(r)
	if err != nil {
		return err
	}
	return retry(ctx, &s.opts, s.budget, storeRouter{s, r}, ep, false,
		func(ctx context.Context, ep *endpoint, _ attempt) error { return call(ctx, ep) })
}

// storeRouter sends retries to the leader, following NOT_LEADER hints.
type storeRouter struct {
	s *Store
	r route
}

func (sr storeRouter) succeeded(ep *endpoint) {
	if sr.r == routeLeader {
		sr.s.believeLeader(ep)
	}
}

// next decides, after attempt failure e on ep, which node the next
// attempt goes to and how long to pause first.
func (sr storeRouter) next(st *retryState, ep *endpoint, e *Error) (*endpoint, time.Duration) {
	s := sr.s
	var pause time.Duration
	notLeader := e.Reason == reasonNotLeader
	switch {
	case e.Code == codes.ResourceExhausted || e.RetryAfter > 0 && !notLeader:
		// Overloaded, or a leader not ready yet: the same node, once the
		// server's hint has passed.
		pause = afterHint(max(e.RetryAfter, s.opts.backoff(st.rounds)))
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
		pause = jittered(s.opts.backoff(st.rounds))
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
		pause = jittered(s.opts.backoff(st.rounds))
	}
	if pause > 0 {
		st.hops = 0
		st.rounds++
	}
	return ep, pause
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
