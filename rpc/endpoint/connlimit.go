package endpoint

import (
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ipv6HostBits: an IPv6 client counts by its /64, the block one host
// usually gets, so that it cannot open a connection from each of its 2^64
// addresses.
const ipv6HostBits = 64

// connLimiter is a listener that bounds the connections open at once, in
// all and per client IP. A connection over a bound is closed as soon as it
// is accepted, before gRPC allocates anything for it, and counted; the
// server never sees it. A refused connection holds a file only for that
// moment, and ConnsMax is below the file limit, so clients can never use up
// the process's files.
type connLimiter struct {
	net.Listener
	max, perIPMax int
	refused       *prometheus.CounterVec // by reason: total, per_ip
	refusedTotal  prometheus.Counter
	refusedPerIP  prometheus.Counter

	mu   sync.Mutex // guards what follows
	open int
	byIP map[netip.Addr]int // only IPs with a connection open: at most max entries
}

func newConnLimiter(l net.Listener, max, perIPMax int) *connLimiter {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "flashd", Subsystem: "grpc", Name: "connections_refused_total",
		Help: "Client connections closed at accept because the server had its maximum open, in all (total) or from that client IP (per_ip).",
	}, []string{"reason"})
	return &connLimiter{
		Listener: l, max: max, perIPMax: perIPMax, refused: refused,
		refusedTotal: refused.WithLabelValues("total"), refusedPerIP: refused.WithLabelValues("per_ip"),
		byIP: map[netip.Addr]int{},
	}
}

// collectors are the limiter's metrics: the refusals, and the connections
// open now.
func (l *connLimiter) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "flashd", Subsystem: "grpc", Name: "connections",
		Help: "Client connections open on the gRPC server.",
	}, func() float64 { return float64(l.openConns()) })}
}

// Accept returns the next connection within the bounds, closing the ones
// over them.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if l.take(ip) {
			return &limitedConn{Conn: c, release: func() { l.give(ip) }}, nil
		}
		c.Close()
	}
}

func (l *connLimiter) take(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.open >= l.max:
		l.refusedTotal.Inc()
		return false
	case l.perIPMax > 0 && l.byIP[ip] >= l.perIPMax:
		l.refusedPerIP.Inc()
		return false
	}
	l.open++
	l.byIP[ip]++
	return true
}

func (l *connLimiter) give(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if n := l.byIP[ip] - 1; n > 0 {
		l.byIP[ip] = n
	} else {
		delete(l.byIP, ip)
	}
}

// openConns is the number of connections open now.
func (l *connLimiter) openConns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// remoteIP is the address a connection counts against: its peer's IP, an
// IPv6 one as its /64. A peer with no IP (a Unix socket) counts as the
// zero address.
func remoteIP(c net.Conn) netip.Addr {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(ipv6HostBits); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// limitedConn gives its place back once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
