package client

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Store is a client of a flashd store cluster: the Store and Admin services
// of every node. It sends calls that need the leader to the node it believes
// leads, follows NOT_LEADER hints, and fails over to the other endpoints
// with a bounded retry budget (see DESIGN.md). It is safe for concurrent use.
type Store struct {
	opts   options
	budget *retryBudget // nil: none

	mu        sync.Mutex
	endpoints []*endpoint // the configured ones first, then discovered leaders
	leader    *endpoint   // believed leader; nil if unknown
	cursor    int         // round-robin start for calls any node may answer
	closed    bool
}

// NewStore returns a client for the store nodes at endpoints (gRPC
// host:port). Connections are made lazily, on the first call to each node.
func NewStore(endpoints []string, opts ...Option) (*Store, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("new store client: no endpoints")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("new store client: %w", err)
	}
	if len(o.frontDoorOnly) > 0 {
		return nil, fmt.Errorf("new store client: %s applies to front-door clients (New) only", o.frontDoorOnly[0])
	}
	s := &Store{opts: o}
	if o.budget {
		s.budget = newRetryBudget(o.budgetRatio, o.budgetMinRPS, time.Now)
	}
	for _, addr := range endpoints {
		if s.find(addr) != nil {
			continue
		}
		ep, err := dial(addr, &s.opts)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("new store client: %w", err)
		}
		s.endpoints = append(s.endpoints, ep)
	}
	return s, nil
}

// Close closes every connection. Calls in flight fail; later calls return
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, ep := range s.endpoints {
		if err := ep.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", ep.addr, err))
		}
	}
	return errors.Join(errs...)
}

// Leader returns the gRPC address of the node believed to lead, or "".
func (s *Store) Leader() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader == nil {
		return ""
	}
	return s.leader.addr
}

// find returns the endpoint at addr, or nil. s.mu must be held, or s not
// yet shared.
func (s *Store) find(addr string) *endpoint {
	for _, ep := range s.endpoints {
		if ep.addr == addr {
			return ep
		}
	}
	return nil
}

// route says which nodes may answer a call.
type route int

const (
	routeLeader route = iota // mutations and linearizable reads
	routeAny                 // stale reads and cluster status
)

// first returns the endpoint to try first: the believed leader for calls
// that need it, else the next endpoint in round-robin order.
func (s *Store) first(r route) (*endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if r == routeLeader && s.leader != nil {
		return s.leader, nil
	}
	ep := s.endpoints[s.cursor%len(s.endpoints)]
	s.cursor = (s.cursor + 1) % len(s.endpoints)
	return ep, nil
}

// after returns the endpoint that follows ep in the list, passing over
// those in skip unless all are.
func (s *Store) after(ep *endpoint, skip []*endpoint) *endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.endpoints)
	at := slices.Index(s.endpoints, ep) // -1 if gone: start at the first
	for k := 1; k <= n; k++ {
		if next := s.endpoints[(at+k+n)%n]; !slices.Contains(skip, next) {
			return next
		}
	}
	return s.endpoints[(at+1+n)%n]
}

// followHint returns the endpoint at a leader address learnt from a
// NOT_LEADER refusal, dialling it if it is not yet known, and believes it
// leads. It returns nil if the client is closed, the address cannot be
// dialled, or too many addresses have been learnt already.
func (s *Store) followHint(addr string) *endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	ep := s.find(addr)
	if ep == nil {
		if s.discovered() >= discoveredEndpointMax {
			return nil
		}
		var err error
		if ep, err = dial(addr, &s.opts); err != nil {
			return nil
		}
		ep.discovered = true
		s.endpoints = append(s.endpoints, ep)
	}
	s.leader = ep
	return ep
}

// discovered counts endpoints learnt from hints. s.mu must be held.
func (s *Store) discovered() int {
	n := 0
	for _, ep := range s.endpoints {
		if ep.discovered {
			n++
		}
	}
	return n
}

// believeLeader records that ep answered a call only the leader may answer.
func (s *Store) believeLeader(ep *endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leader = ep
}

// doubtLeader forgets ep as the leader after it failed.
func (s *Store) doubtLeader(ep *endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader == ep {
		s.leader = nil
	}
}

// forgetLeader forgets the believed leader after leadership moved.
func (s *Store) forgetLeader() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leader = nil
}
