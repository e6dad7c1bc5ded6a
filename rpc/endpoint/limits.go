package endpoint

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Limits bound what one gRPC server gives its clients, so that a few
// hostile ones cannot take its memory or its files from the others. A zero
// field means no bound of flashd's own (gRPC's default); the front door and
// the store node each have their defaults (frontdoor.DefaultLimits,
// rpc.DefaultLimits), and the flags of `flashd frontdoor` and `flashd store`
// set them.
type Limits struct {
	// Connections open at once, in all and per client IP (an IPv6 client
	// counts by its /64). Over either, a new connection is closed as soon
	// as it is accepted. ConnsMax, 0 included, is lowered to what the
	// process's file limit leaves for clients.
	ConnsMax      int
	ConnsPerIPMax int
	// StreamsPerConnMax is HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS: calls
	// one connection may have open; more are refused (REFUSED_STREAM, which
	// gRPC clients wait out).
	StreamsPerConnMax uint32
	// CallsMax bounds the calls open at once over all connections; more are
	// refused with RESOURCE_EXHAUSTED before a handler runs.
	CallsMax int
	// CallTimeout is the deadline of a unary call whose caller set none. It
	// is set when the call's headers arrive, so it ends a call whose request
	// never comes too.
	CallTimeout time.Duration
	// ConnIdleMax closes a connection without calls for that long;
	// ConnAgeMax closes any connection that old, after ConnAgeGrace for its
	// calls to finish (clients reconnect; new calls go to the new
	// connection at once).
	ConnIdleMax  time.Duration
	ConnAgeMax   time.Duration
	ConnAgeGrace time.Duration
	// HandshakeTimeout bounds a new connection's opening (TLS and HTTP/2
	// preface): a client that connects and sends nothing is closed.
	HandshakeTimeout time.Duration
	// HeaderBytesMax bounds a call's headers (HTTP/2 header list size);
	// MessageBytesMax a request message. A client can make the server hold
	// up to MessageBytesMax per open call (HTTP/2 flow control opens the
	// window to the announced message size).
	HeaderBytesMax  uint32
	MessageBytesMax int
}

// Keepalive enforcement, the same for every flashd server: a client may
// ping at most every keepaliveMinTime, even without calls (mobile clients
// keep NAT mappings alive so); one that pings more often is closed
// (GOAWAY too_many_pings). The server pings a connection silent for
// keepaliveTime and closes it if no answer comes within keepaliveTimeout,
// so a vanished peer's connection and calls are released.
const (
	keepaliveMinTime = 10 * time.Second
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
)

// fileReserve is the part of the file limit kept for what is not a client
// connection: listeners, connections to store nodes and peers, raft's
// connection pool, the data files, /metrics scrapes.
const fileReserve = 512

func (l Limits) validate() error {
	switch {
	case l.ConnsMax < 0 || l.ConnsPerIPMax < 0 || l.CallsMax < 0 || l.MessageBytesMax < 0:
		return errors.New("connection, call and message limits must not be negative")
	case l.CallTimeout < 0 || l.ConnIdleMax < 0 || l.ConnAgeMax < 0 || l.ConnAgeGrace < 0 || l.HandshakeTimeout < 0:
		return errors.New("timeouts must not be negative")
	case l.CallTimeout > 0 && l.CallTimeout < 10*time.Millisecond:
		return fmt.Errorf("call timeout %v: must be at least 10ms", l.CallTimeout)
	case l.ConnIdleMax > 0 && l.ConnIdleMax < time.Second, l.ConnAgeMax > 0 && l.ConnAgeMax < time.Second:
		return errors.New("connection idle and age limits must be at least 1s")
	case l.HeaderBytesMax > 0 && l.HeaderBytesMax < 4096:
		return fmt.Errorf("header bytes max %d: must be at least 4096", l.HeaderBytesMax)
	case l.MessageBytesMax > 0 && l.MessageBytesMax < 4096:
		return fmt.Errorf("message bytes max %d: must be at least 4096", l.MessageBytesMax)
	}
	return nil
}

// withFileLimit lowers ConnsMax to what the process's file limit leaves
// for client connections (accepting past it fails with EMFILE for every
// client, real ones included). It returns the file limit it read, 0 if none.
func (l Limits) withFileLimit() (Limits, uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return l, 0
	}
	usable := int(min(lim.Cur, math.MaxInt32)) - fileReserve
	usable = max(usable, int(lim.Cur/2)) // a tiny limit: half for clients
	if l.ConnsMax == 0 || l.ConnsMax > usable {
		l.ConnsMax = usable
	}
	return l, lim.Cur
}

// serverOptions are the gRPC server options that apply l: all but the
// connection bounds, which are the listener's (connLimiter); the call bound
// and the default deadline are calls's, as the tap handle.
func serverOptions(l Limits, calls *callLimiter) []grpc.ServerOption {
	maxMessage := l.MessageBytesMax
	if maxMessage == 0 {
		maxMessage = pb.MaxMessageBytes
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessage),
		grpc.MaxSendMsgSize(pb.MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: l.ConnIdleMax, MaxConnectionAge: l.ConnAgeMax, MaxConnectionAgeGrace: l.ConnAgeGrace,
			Time: keepaliveTime, Timeout: keepaliveTimeout,
		}),
		grpc.InTapHandle(calls.admit),
	}
	if l.StreamsPerConnMax > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(l.StreamsPerConnMax))
	}
	if l.HeaderBytesMax > 0 {
		opts = append(opts, grpc.MaxHeaderListSize(l.HeaderBytesMax))
	}
	if l.HandshakeTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(l.HandshakeTimeout))
	}
	return opts
}

// errTooManyCalls refuses a call over Limits.CallsMax.
var errTooManyCalls = status.Error(codes.ResourceExhausted, "server busy: too many calls open, retry later")

// callLimiter counts the calls open on a server and gives a deadline to
// unary calls that came without one. It runs as the server's tap handle:
// when a call's headers arrive, before a goroutine waits for its request.
type callLimiter struct {
	max     int64
	timeout time.Duration
	open    atomic.Int64
	refused prometheus.Counter

	// streaming holds the full names of streaming methods (long-lived by
	// design: no default deadline), read from the server once it serves.
	streamingOnce sync.Once
	streaming     map[string]bool
	server        *grpc.Server
}

func newCallLimiter(l Limits) *callLimiter {
	return &callLimiter{
		max: int64(l.CallsMax), timeout: l.CallTimeout,
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flashd", Subsystem: "grpc", Name: "calls_refused_total",
			Help: "Calls refused with RESOURCE_EXHAUSTED because the server had its maximum of calls open.",
		}),
	}
}

// admit is a tap.ServerInHandle. The transport cancels a call's context
// when the call ends, whatever ends it, so that is when its count is given
// back and when a deadline made here is released.
func (c *callLimiter) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	if c.max > 0 {
		if c.open.Add(1) > c.max {
			c.open.Add(-1)
			c.refused.Inc()
			return nil, errTooManyCalls
		}
		context.AfterFunc(ctx, func() { c.open.Add(-1) })
	}
	if _, ok := ctx.Deadline(); ok || c.timeout == 0 || c.isStreaming(info.FullMethodName) {
		return ctx, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	_ = cancel // released with the call's own context, its parent (above)
	return ctx, nil
}

func (c *callLimiter) isStreaming(method string) bool {
	c.streamingOnce.Do(func() {
		c.streaming = map[string]bool{}
		for service, info := range c.server.GetServiceInfo() {
			for _, m := range info.Methods {
				if m.IsClientStream || m.IsServerStream {
					c.streaming["/"+service+"/"+m.Name] = true
				}
			}
		}
	})
	return c.streaming[method]
}
