package frontdoor

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/flashd/flashd/frontdoor/token"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Metadata keys the front door reads.
const (
	mdAuthorization = "authorization" // "Bearer <JWT>"
	mdUserID        = "x-user-id"     // insecure-header mode only
	bearerPrefix    = "Bearer "
)

// caller is who sent a claim, as the funnel's first stages see it: the
// credentials, the address per-IP limits count, and whether its client
// library drops calls itself at degradation level 3. A unary call has one
// caller, read from its metadata; each claim of a ClaimMany call has its
// own (callerOfEntry).
type caller struct {
	authorization string // the "authorization" metadata: "Bearer <JWT>"
	userID        string // the "x-user-id" metadata (insecure-header mode)
	ip            netip.Addr
	hasIP         bool
	clientDrops   bool
}

// callerOf reads the caller of a unary call from its metadata and peer.
func (d *Door) callerOf(ctx context.Context) caller {
	md, _ := metadata.FromIncomingContext(ctx)
	c := caller{
		authorization: firstValue(md, mdAuthorization),
		userID:        firstValue(md, mdUserID),
		clientDrops:   len(md.Get(MDClientDrops)) > 0,
	}
	c.ip, c.hasIP = clientIP(ctx, d.cfg.ClientIPHeader)
	return c
}

// callerOfEntry is the caller of one claim of a ClaimMany call: the
// entry's own credentials (the call's where it has none), and the entry's
// client IP where this door trusts its callers' client IP header.
func (d *Door) callerOfEntry(call caller, e entryCaller) caller {
	c := call
	if e.GetAuthorization() != "" || e.GetInsecureUserId() != "" {
		c.authorization, c.userID = e.GetAuthorization(), e.GetInsecureUserId()
	}
	if d.cfg.ClientIPHeader != "" && e.GetClientIp() != "" {
		if a, err := netip.ParseAddr(e.GetClientIp()); err == nil {
			c.ip, c.hasIP = clientKey(a), true
		}
	}
	return c
}

// entryCaller is how an entry of a ClaimMany or DrawMany call names its
// caller.
type entryCaller interface {
	GetAuthorization() string
	GetInsecureUserId() string
	GetClientIp() string
}

func firstValue(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// authenticator finds the user of a caller (stage 1 of the funnel).
type authenticator interface {
	authenticate(c *caller, now time.Time) (string, error)
}

// headerAuth takes the user from the x-user-id metadata, unchecked. It
// exists for demos and benchmarks: anyone can claim as anyone.
type headerAuth struct{}

func (headerAuth) authenticate(c *caller, _ time.Time) (string, error) {
	if c.userID == "" {
		return "", errMissingToken
	}
	if err := pb.ValidateID("user id", c.userID); err != nil {
		return "", errInvalidToken
	}
	return c.userID, nil
}

// tokenAuth verifies bearer tokens: signature, expiry, and the door's
// policy (issuer, audience, longest lifetime). A token verified once is remembered
// with its user and expiry (in bounded memory), so the next calls with it
// cost a map lookup instead of a signature check and a JSON decode. The
// cache is keyed by the whole token: only a byte-identical token hits it.
type tokenAuth struct {
	key      *token.Key
	policy   token.Policy
	verified *boundedMap[string, verifiedToken]
}

type verifiedToken struct {
	user    string
	expires time.Time
}

func newTokenAuth(key *token.Key, policy token.Policy, maxTokens int) *tokenAuth {
	return &tokenAuth{key: key, policy: policy, verified: newBoundedMap[string, verifiedToken](maxTokens)}
}

func (a *tokenAuth) authenticate(c *caller, now time.Time) (string, error) {
	if c.authorization == "" {
		return "", errMissingToken
	}
	raw, ok := strings.CutPrefix(c.authorization, bearerPrefix)
	if !ok {
		if raw, ok = strings.CutPrefix(c.authorization, "bearer "); !ok {
			return "", errInvalidToken
		}
	}
	var user string
	a.verified.update(raw, false, func(t *verifiedToken) {
		if now.Before(t.expires) {
			user = t.user
		}
	})
	if user != "" {
		return user, nil
	}
	user, expires, err := a.key.Verify(raw, a.policy, now)
	switch {
	case errors.Is(err, token.ErrExpired):
		a.verified.remove(raw)
		return "", errTokenExpired
	case errors.Is(err, token.ErrMissing):
		return "", errMissingToken
	case err != nil:
		return "", errInvalidToken
	}
	if err := pb.ValidateID("user id", user); err != nil {
		return "", errInvalidToken
	}
	a.verified.update(raw, true, func(t *verifiedToken) { *t = verifiedToken{user: user, expires: expires} })
	return user, nil
}

// ipv6HostBits is the prefix per-IP limits count an IPv6 client by: one
// host usually gets a whole /64, and counting single addresses in it would
// give it 2^64 buckets.
const ipv6HostBits = 64

// clientIP is the address per-IP limits count against: the first address
// in the configured header (set by a trusted proxy) if there is one, else
// the peer's address; an IPv6 address stands for its /64. ok is false when
// neither gives an address.
func clientIP(ctx context.Context, header string) (netip.Addr, bool) {
	if header != "" {
		if v := metadata.ValueFromIncomingContext(ctx, header); len(v) > 0 {
			first, _, _ := strings.Cut(v[0], ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(first)); err == nil {
				return clientKey(a), true
			}
		}
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return netip.Addr{}, false
	}
	switch a := p.Addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return clientKey(ip), ok
	default:
		ap, err := netip.ParseAddrPort(p.Addr.String())
		if err != nil {
			return netip.Addr{}, false
		}
		return clientKey(ap.Addr()), true
	}
}

func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(ipv6HostBits); err == nil {
			return p.Addr()
		}
	}
	return a
}
