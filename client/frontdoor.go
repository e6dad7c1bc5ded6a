package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// Client is a client of flashd front doors (the flashd.v1.FrontDoor
// service): what a service imports to let its users claim. It spreads
// calls over the front doors that pass their health checks, retries under
// the policy of DESIGN.md with one request ID per logical call, throttles
// its retries with a budget, and drops calls itself when the front doors
// ask (degradation level 3). It is safe for concurrent use; Close it.
type Client struct {
	opts      options
	budget    *retryBudget
	endpoints []*endpoint // fixed at New
	cursor    atomic.Uint64
	drops     dropper
	closed    atomic.Bool
	stats     clientStats

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// clientStats counts what a Client did, for Stats.
type clientStats struct {
	calls, attempts, retries, dropped, budgetExhausted atomic.Uint64
}

// Stats is what a Client has done since New.
type Stats struct {
	Calls           uint64  // logical calls sent (dropped ones excluded)
	Attempts        uint64  // RPCs sent: first tries and retries
	Retries         uint64  // attempts after the first of a call
	Dropped         uint64  // calls dropped by the client (degradation level 3)
	BudgetExhausted uint64  // calls that ended because the retry budget was spent
	DropFraction    float64 // the fraction dropped now
	Healthy         int     // front doors that passed their latest health check
}

// New returns a client of the front doors at endpoints (gRPC host:port).
// It asks each for its health once, within ctx, before it returns, then
// again every health check interval in the background; an unreachable
// front door is not an error (it may come up later), a bad option is.
func New(ctx context.Context, endpoints []string, opts ...Option) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("new front-door client: no endpoints")
	}
	o := defaultFrontDoorOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("new front-door client: %w", err)
	}
	if o.healthInterval < healthCheckIntervalMin {
		return nil, fmt.Errorf("new front-door client: health check interval %v: must be at least %v", o.healthInterval, healthCheckIntervalMin)
	}
	c := &Client{opts: o, stop: make(chan struct{})}
	if o.budget {
		c.budget = newRetryBudget(o.budgetRatio, o.budgetMinRPS, time.Now)
	}
	for _, addr := range endpoints {
		if slices.ContainsFunc(c.endpoints, func(ep *endpoint) bool { return ep.addr == addr }) {
			continue
		}
		ep, err := dial(addr, &c.opts)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("new front-door client: %w", err)
		}
		if o.claimsPerCall > 0 {
			learn := func(header, trailer metadata.MD) { c.drops.learn(header, trailer, time.Now()) }
			ep.claims = newBatcher(claimMany(ep.frontDoor), &c.opts, learn)
			ep.draws = newBatcher(drawMany(ep.frontDoor), &c.opts, learn)
		}
		c.endpoints = append(c.endpoints, ep)
	}
	c.checkHealth(ctx)
	c.wg.Add(1)
	go c.healthLoop()
	return c, nil
}

// Close stops the health checks and closes every connection. Calls in
// flight fail; later calls return ErrClosed.
func (c *Client) Close() error {
	var errs []error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.stop)
		for _, ep := range c.endpoints {
			if err := ep.conn.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", ep.addr, err))
			}
		}
		for _, ep := range c.endpoints { // after the connections: calls in flight fail at once
			if ep.claims != nil {
				ep.claims.close()
				ep.draws.close()
			}
		}
		c.wg.Wait()
	})
	return errors.Join(errs...)
}

// Stats returns what the client has done since New.
func (c *Client) Stats() Stats {
	healthy := 0
	for _, ep := range c.endpoints {
		if !ep.unhealthy.Load() {
			healthy++
		}
	}
	return Stats{
		Calls:           c.stats.calls.Load(),
		Attempts:        c.stats.attempts.Load(),
		Retries:         c.stats.retries.Load(),
		Dropped:         c.stats.dropped.Load(),
		BudgetExhausted: c.stats.budgetExhausted.Load(),
		DropFraction:    c.drops.current(time.Now()),
		Healthy:         healthy,
	}
}

// Claim reserves a unit (or Quantity(n)) of an item for the calling user
// (AsUser, BearerToken, or the client's TokenSource) and returns the
// claim. A refusal is an error matching ErrSoldOut, ErrLimitReached,
// ErrNotEligible (RetryAfter(err) says when the user's wave opens),
// ErrCampaignClosed, ErrNotFound, ErrInvalidArgument, ErrUnauthenticated;
// Reason(err) is the server's reason. Transient failures are retried with
// the same request ID; when they outlast the call, the error matches
// ErrUnavailable, ErrOverloaded, context.DeadlineExceeded, ErrDropped or
// ErrRetryBudgetExhausted, and IsRetryable(err) is true: go on with the
// same claim later with Resume and the claim's request ID.
func (c *Client) Claim(ctx context.Context, campaign, item string, opts ...CallOption) (*flashdpb.Claim, error) {
	co := callOpts(opts)
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if drop, f := c.drops.drop(time.Now()); drop {
		c.stats.dropped.Add(1)
		return nil, droppedError(f)
	}
	req := &flashdpb.FrontDoorClaimRequest{
		CampaignId: campaign, ItemId: item, Quantity: co.quantity, RequestId: co.requestID,
	}
	ensureRequestID(&req.RequestId)
	var claim *flashdpb.Claim
	co.selfTimed = true // claimOnce bounds each attempt by its deadline
	err := c.do(ctx, co, func(ctx context.Context, ep *endpoint, at attempt) error {
		// A resend may find the front door's caches saying sold out when
		// the store holds a grant for this request ID: it asks the store.
		req.Retry = at.resend || co.resume
		var err error
		claim, err = c.claimOnce(ctx, ep, co, req, at.deadline)
		return err
	})
	if err != nil {
		return nil, err
	}
	return claim, nil
}

// claimOnce is one attempt of a Claim, ending by deadline (if not zero):
// in the front door's next ClaimMany call when claims are batched, else
// (or when the front door has no ClaimMany) as a unary Claim call.
func (c *Client) claimOnce(ctx context.Context, ep *endpoint, co *callOptions, req *flashdpb.FrontDoorClaimRequest, deadline time.Time) (*flashdpb.Claim, error) {
	if b := ep.claims; b != nil && !b.unsupported.Load() {
		claim, err := claimBatched(ctx, b, co, req, deadline)
		if err != errManyUnsupported {
			return claim, err
		}
	}
	return c.claimUnary(ctx, ep, req, deadline)
}

// claimBatched sends one attempt in the front door's next ClaimMany call.
func claimBatched(ctx context.Context, b *batcher[*flashdpb.ClaimManyEntry, *flashdpb.Claim], co *callOptions, req *flashdpb.FrontDoorClaimRequest, deadline time.Time) (*flashdpb.Claim, error) {
	// A copy per attempt: an abandoned attempt's entry may still be on
	// its way in a call when the next attempt changes Retry.
	entry := &flashdpb.ClaimManyEntry{
		Claim: &flashdpb.FrontDoorClaimRequest{
			CampaignId: req.CampaignId, ItemId: req.ItemId, Quantity: req.Quantity,
			RequestId: req.RequestId, Retry: req.Retry,
		},
		Authorization: co.authorization, InsecureUserId: co.user,
	}
	claim, err := b.send(ctx, entry, deadline)
	if err == nil && claim == nil {
		return nil, status.Error(codes.Internal, "front door granted a claim without its record")
	}
	return claim, err
}

// claimUnary sends one attempt as a FrontDoor.Claim call.
func (c *Client) claimUnary(ctx context.Context, ep *endpoint, req *flashdpb.FrontDoorClaimRequest, deadline time.Time) (*flashdpb.Claim, error) {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	resp, err := unaryWithDrops(c, func(callOpts ...grpc.CallOption) (*flashdpb.FrontDoorClaimResponse, error) {
		return ep.frontDoor.Claim(ctx, req, callOpts...)
	})
	if err != nil {
		return nil, err
	}
	if claim := resp.GetClaim(); claim != nil {
		return claim, nil
	}
	return &flashdpb.Claim{
		Id: resp.GetClaimId(), CampaignId: req.CampaignId, ItemId: req.ItemId, Quantity: max(req.Quantity, 1),
		State: resp.GetState(), Deadline: resp.GetDeadline(), RequestId: resp.GetRequestId(),
	}, nil
}

// GetItem returns the public view of an item (sold out or not, a rough
// share of the stock left), answered from a front door's caches.
func (c *Client) GetItem(ctx context.Context, campaign, item string) (*flashdpb.PublicItem, error) {
	var out *flashdpb.PublicItem
	err := c.do(ctx, callOpts(nil), func(ctx context.Context, ep *endpoint, _ attempt) error {
		var err error
		out, err = ep.frontDoor.GetItem(ctx, &flashdpb.PublicItemRequest{CampaignId: campaign, ItemId: item})
		return err
	})
	return out, err
}

// ListMyClaims lists the calling user's claims, in one campaign or (an
// empty campaign) in all. It reads through to the store, so a claim just
// granted is in it.
func (c *Client) ListMyClaims(ctx context.Context, campaign string, opts ...CallOption) ([]*flashdpb.Claim, error) {
	var out []*flashdpb.Claim
	err := c.do(ctx, callOpts(opts), func(ctx context.Context, ep *endpoint, _ attempt) error {
		resp, err := ep.frontDoor.ListMyClaims(ctx, &flashdpb.ListMyClaimsRequest{CampaignId: campaign})
		out = resp.GetClaims()
		return err
	})
	return out, err
}

func callOpts(opts []CallOption) *callOptions {
	co := &callOptions{}
	for _, opt := range opts {
		opt(co)
	}
	return co
}

// do runs one logical call under the front-door retry policy.
func (c *Client) do(ctx context.Context, co *callOptions, call func(context.Context, *endpoint, attempt) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := c.resolveCaller(ctx, co); err != nil {
		return err
	}
	ctx = outgoing(ctx, co)
	c.stats.calls.Add(1)
	err := retry(ctx, &c.opts, c.budget, frontDoorRouter{c}, c.pick(), co.selfTimed, func(ctx context.Context, ep *endpoint, at attempt) error {
		c.stats.attempts.Add(1)
		if at.n > 1 {
			c.stats.retries.Add(1)
		}
		return call(ctx, ep, at)
	})
	if errors.Is(err, ErrRetryBudgetExhausted) {
		c.stats.budgetExhausted.Add(1)
	}
	return err
}

// pick returns the front door for a call's first try: the next healthy
// one in round-robin order, or the next one if none is healthy.
func (c *Client) pick() *endpoint {
	n := len(c.endpoints)
	start := int(c.cursor.Add(1) % uint64(n))
	for k := range n {
		if ep := c.endpoints[(start+k)%n]; !ep.unhealthy.Load() {
			return ep
		}
	}
	return c.endpoints[start]
}

// after returns the front door that follows ep: the next healthy one not
// in down, else the next not in down, else simply the next.
func (c *Client) after(ep *endpoint, down []*endpoint) *endpoint {
	n := len(c.endpoints)
	at := slices.Index(c.endpoints, ep)
	var fallback *endpoint
	for k := 1; k <= n; k++ {
		next := c.endpoints[(at+k)%n]
		if slices.Contains(down, next) {
			continue
		}
		if !next.unhealthy.Load() {
			return next
		}
		if fallback == nil {
			fallback = next
		}
	}
	if fallback != nil {
		return fallback
	}
	return c.endpoints[(at+1)%n]
}

// frontDoorRouter sends retries to front doors. Every front door can
// answer every call, so the choice is between the same one and the next.
type frontDoorRouter struct{ c *Client }

func (r frontDoorRouter) succeeded(ep *endpoint) { ep.unhealthy.Store(false) }

func (r frontDoorRouter) next(st *retryState, ep *endpoint, e *Error) (*endpoint, time.Duration) {
	c := r.c
	var pause time.Duration
	switch {
	case e.Code == codes.ResourceExhausted:
		// Rate limited or shedding load: refused before any work. The
		// same front door (its limits are its share; going round them
		// would defeat them), once its hint has passed, with full jitter.
		pause = fullJitter(e.RetryAfter, c.opts.backoff(st.rounds))
	case e.Reason == reasonStoreUnavailable:
		// The store behind the front door failed (a leader election,
		// most likely): every front door shares it. Give it time, then
		// try another front door.
		pause = max(afterHint(e.RetryAfter), jittered(c.opts.backoff(st.rounds)))
		ep = c.after(ep, st.down)
	default:
		// This front door is down, shutting down or too slow: the next
		// one, at once. One that is down is skipped for the rest of the
		// call and by other calls until a health check passes.
		if e.Code == codes.Unavailable {
			st.down = append(st.down, ep)
			ep.unhealthy.Store(true)
		}
		ep = c.after(ep, st.down)
		st.hops++
	}
	if st.hops >= len(c.endpoints) {
		// Every front door had its turn: pause before the next round.
		pause = jittered(c.opts.backoff(st.rounds))
	}
	if pause > 0 {
		st.hops = 0
		st.rounds++
	}
	return ep, pause
}
