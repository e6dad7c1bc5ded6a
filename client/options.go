package client

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"
)

// Defaults of a Store (a client of store nodes).
const (
	defaultMaxAttempts    = 10
	defaultBackoffBase    = 100 * time.Millisecond
	defaultBackoffMax     = time.Second
	defaultCallTimeout    = 30 * time.Second // for a ctx without a deadline
	discoveredEndpointMax = 16               // leader addresses learnt from hints
	reconnectDelayMax     = 3 * time.Second  // gRPC's own reconnect backoff
	connectTimeoutMin     = 2 * time.Second
)

// Defaults of a Client (a client of front doors). A claim is a user
// waiting at a screen: it gets less time and fewer attempts than an admin
// call, and retries are throttled by a budget.
const (
	defaultFrontDoorMaxAttempts    = 6
	defaultFrontDoorBackoffBase    = 50 * time.Millisecond
	defaultFrontDoorCallTimeout    = 10 * time.Second
	defaultFrontDoorAttemptTimeout = 6 * time.Second // a front door's own store timeout is 5s
	defaultRetryBudgetRatio        = 0.2             // retries per first try
	defaultRetryBudgetMinPerSecond = 10              // retries a quiet client may always make
	defaultHealthCheckInterval     = 2 * time.Second
	healthCheckTimeout             = time.Second
	healthCheckIntervalMin         = 10 * time.Millisecond
)

// Option configures a Client or a Store. Options that only make sense for
// front doors (WithTokenSource, WithHealthCheckInterval) are refused by
// NewStore.
type Option func(*options)

type options struct {
	maxAttempts    int
	backoffBase    time.Duration
	backoffMax     time.Duration
	attemptTimeout time.Duration
	callTimeout    time.Duration
	dialOptions    []grpc.DialOption

	budget       bool // retries are throttled by a retry budget
	budgetRatio  float64
	budgetMinRPS float64

	// Front doors only.
	tokenSource    TokenSource
	healthInterval time.Duration
	claimsPerCall  int // 0: every Claim is a unary call (no batching)
	callsInFlight  int
	frontDoorOnly  []string // names of the front-door options given
}

func defaultOptions() options {
	return options{
		maxAttempts: defaultMaxAttempts,
		backoffBase: defaultBackoffBase,
		backoffMax:  defaultBackoffMax,
		callTimeout: defaultCallTimeout,
	}
}

func defaultFrontDoorOptions() options {
	return options{
		maxAttempts:    defaultFrontDoorMaxAttempts,
		backoffBase:    defaultFrontDoorBackoffBase,
		backoffMax:     defaultBackoffMax,
		callTimeout:    defaultFrontDoorCallTimeout,
		attemptTimeout: defaultFrontDoorAttemptTimeout,
		budget:         true,
		budgetRatio:    defaultRetryBudgetRatio,
		budgetMinRPS:   defaultRetryBudgetMinPerSecond,
		healthInterval: defaultHealthCheckInterval,
		claimsPerCall:  defaultClaimsPerCall,
		callsInFlight:  defaultCallsInFlight,
	}
}

func (o *options) validate() error {
	switch {
	case o.maxAttempts < 1:
		return fmt.Errorf("max attempts %d: must be at least 1", o.maxAttempts)
	case o.backoffBase <= 0 || o.backoffMax < o.backoffBase:
		return fmt.Errorf("backoff %v..%v: need 0 < base <= max", o.backoffBase, o.backoffMax)
	case o.attemptTimeout < 0:
		return fmt.Errorf("attempt timeout %v: must not be negative", o.attemptTimeout)
	case o.callTimeout <= 0:
		return fmt.Errorf("call timeout %v: must be positive", o.callTimeout)
	case o.budget && !(o.budgetRatio >= 0 && o.budgetRatio <= retryBudgetRatioMax):
		return fmt.Errorf("retry budget ratio %v: must be in [0, %v]", o.budgetRatio, retryBudgetRatioMax)
	case o.budget && !(o.budgetMinRPS >= 0 && !math.IsInf(o.budgetMinRPS, 0)):
		return fmt.Errorf("retry budget minimum %v per second: must be a number >= 0", o.budgetMinRPS)
	case o.claimsPerCall < 0 || o.claimsPerCall > claimsPerCallMax:
		return fmt.Errorf("claim batching: %d claims per call: must be in [0, %d]", o.claimsPerCall, claimsPerCallMax)
	case o.claimsPerCall > 0 && o.callsInFlight < 1:
		return fmt.Errorf("claim batching: %d calls in flight: must be at least 1", o.callsInFlight)
	}
	return nil
}

// WithMaxAttempts bounds the attempts of one call, the first included
// (default 10 for a Store, 6 for a Client).
func WithMaxAttempts(n int) Option {
	return func(o *options) { o.maxAttempts = n }
}

// WithBackoff sets the pause between rounds of retries: it starts at base,
// doubles each round up to max, and is jittered (default 100ms to 1s for
// a Store, 50ms to 1s for a Client).
func WithBackoff(base, max time.Duration) Option {
	return func(o *options) { o.backoffBase, o.backoffMax = base, max }
}

// WithAttemptTimeout bounds each attempt of a call, so that a server that
// does not answer is given up for the next one while the call's context is
// still alive. Zero bounds attempts only by that context (the default for
// a Store; 6s for a Client).
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) { o.attemptTimeout = d }
}

// WithCallTimeout bounds calls whose context has no deadline (default 30s
// for a Store, 10s for a Client).
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) { o.callTimeout = d }
}

// WithDialOptions adds gRPC dial options, applied after the client's own
// (insecure transport credentials, a short reconnect backoff), so they can
// replace them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// WithRetryBudget throttles retries across all the calls of a client:
// each first try earns ratio retries, and minPerSecond more are earned
// every second whatever the traffic, so that retries stay near ratio times
// the first tries when a cluster fails, instead of multiplying the load on
// it (like gRPC's retry throttling). A retry the budget cannot pay for is
// not made: the call fails with ErrRetryBudgetExhausted and the last
// server error. A Client has a budget of 0.2 and 10 per second by default;
// a Store has none unless given one.
func WithRetryBudget(ratio, minPerSecond float64) Option {
	return func(o *options) { o.budget, o.budgetRatio, o.budgetMinRPS = true, ratio, minPerSecond }
}

// WithoutRetryBudget lets every call retry up to its attempts and deadline.
func WithoutRetryBudget() Option {
	return func(o *options) { o.budget = false }
}

// WithTokenSource makes a Client send a bearer token from src on every call
// ("authorization: Bearer <token>"), unless the call gives its own user
// (AsUser) or token (WithToken). Front doors only.
func WithTokenSource(src TokenSource) Option {
	return func(o *options) {
		o.tokenSource = src
		o.frontDoorOnly = append(o.frontDoorOnly, "WithTokenSource")
	}
}

// WithHealthCheckInterval sets how often a Client asks every front door
// for its health (grpc.health.v1); calls go to the healthy ones (default
// 2s). Front doors only.
func WithHealthCheckInterval(d time.Duration) Option {
	return func(o *options) {
		o.healthInterval = d
		o.frontDoorOnly = append(o.frontDoorOnly, "WithHealthCheckInterval")
	}
}

// WithClaimBatching sets how a Client multiplexes concurrent Claim calls
// onto FrontDoor.ClaimMany calls: at most claimsPerCall claims (up to 1024)
// in one call, and at most callsInFlight such calls per front door at a
// time; claims that find them all in flight wait for the next (default 256
// and 4). A front door without ClaimMany gets unary Claim calls. Front
// doors only.
func WithClaimBatching(claimsPerCall, callsInFlight int) Option {
	return func(o *options) {
		o.claimsPerCall, o.callsInFlight = claimsPerCall, callsInFlight
		o.frontDoorOnly = append(o.frontDoorOnly, "WithClaimBatching")
	}
}

// WithoutClaimBatching makes every Claim a unary FrontDoor.Claim call.
// Front doors only.
func WithoutClaimBatching() Option {
	return func(o *options) {
		o.claimsPerCall = 0
		o.frontDoorOnly = append(o.frontDoorOnly, "WithoutClaimBatching")
	}
}
