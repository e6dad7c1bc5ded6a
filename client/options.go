package client

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// Defaults for the retry policy.
const (
	defaultMaxAttempts    = 10
	defaultBackoffBase    = 100 * time.Millisecond
	defaultBackoffMax     = time.Second
	defaultCallTimeout    = 30 * time.Second // for a ctx without a deadline
	discoveredEndpointMax = 16               // leader addresses learnt from hints
	reconnectDelayMax     = 3 * time.Second  // gRPC's own reconnect backoff
	connectTimeoutMin     = 2 * time.Second
)

// Option configures a Store.
type Option func(*options)

type options struct {
	maxAttempts    int
	backoffBase    time.Duration
	backoffMax     time.Duration
	attemptTimeout time.Duration
	callTimeout    time.Duration
	dialOptions    []grpc.DialOption
}

func defaultOptions() options {
	return options{
		maxAttempts: defaultMaxAttempts,
		backoffBase: defaultBackoffBase,
		backoffMax:  defaultBackoffMax,
		callTimeout: defaultCallTimeout,
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
	}
	return nil
}

// WithMaxAttempts bounds the attempts of one call, the first included
// (default 10).
func WithMaxAttempts(n int) Option {
	return func(o *options) { o.maxAttempts = n }
}

// WithBackoff sets the pause after a round in which every endpoint failed:
// it starts at base, doubles each round up to max, and is jittered
// (default 100ms to 1s).
func WithBackoff(base, max time.Duration) Option {
	return func(o *options) { o.backoffBase, o.backoffMax = base, max }
}

// WithAttemptTimeout bounds each attempt of a call, so that a node that
// does not answer is given up for the next one while the call's context is
// still alive. Zero (the default) bounds attempts only by that context.
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) { o.attemptTimeout = d }
}

// WithCallTimeout bounds calls whose context has no deadline (default 30s).
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) { o.callTimeout = d }
}

// WithDialOptions adds gRPC dial options, applied after the client's own
// (insecure transport credentials, a short reconnect backoff), so they can
// replace them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}
