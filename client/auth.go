package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc/metadata"
)

// Metadata a Client sends to front doors.
const (
	mdAuthorization = "authorization" // "Bearer <JWT>"
	mdUserID        = "x-user-id"     // front doors in insecure-header mode only
	bearerPrefix    = "Bearer "
)

// TokenSource gives the bearer token a Client sends to the front doors: a
// signed JWT whose "sub" claim is the user. It is asked once per call, so
// it should cache its token until shortly before it expires.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenFunc adapts a function to a TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// StaticToken is a TokenSource that always gives the same token.
func StaticToken(token string) TokenSource {
	return TokenFunc(func(context.Context) (string, error) { return token, nil })
}

// CallOption configures one call of a Client.
type CallOption func(*callOptions)

type callOptions struct {
	user      string
	token     string
	requestID string
	resume    bool // the request ID's earlier call may have been applied
	quantity  uint32

	authorization string // "Bearer <token>", set by resolveCaller
	selfTimed     bool   // the call bounds its attempts itself (see retry)
}

// AsUser makes the call as user, named in the x-user-id header. Only a
// front door started with --auth insecure-header believes it (demos,
// benchmarks and tests, where anyone may claim as anyone); a real front
// door wants a token.
func AsUser(user string) CallOption {
	return func(c *callOptions) { c.user = user }
}

// BearerToken makes the call with this token instead of the client's
// TokenSource: for a service that forwards its end user's own token.
func BearerToken(token string) CallOption {
	return func(c *callOptions) { c.token = token }
}

// RequestID names the logical claim (see NewRequestID). Without it, each
// Claim makes a new ID, reused by every retry within the call. The store
// applies one request ID at most once. To go on with an earlier call that
// may have been applied (MayHaveApplied), use Resume.
func RequestID(id string) CallOption {
	return func(c *callOptions) { c.requestID = id }
}

// Resume goes on with an earlier Claim, DrawCard or RedeemSet whose call
// may have been applied (MayHaveApplied(err)): the same request ID, and
// every attempt, the first included, flagged as a resend. A front door then asks the store rather than answer from
// its caches (sold out, limit reached, no draws left, pool empty), and the
// store answers with that request ID's first result.
func Resume(id string) CallOption {
	return func(c *callOptions) { c.requestID, c.resume = id, true }
}

// Quantity claims n units (default 1; at most the item's per-user limit).
func Quantity(n uint32) CallOption {
	return func(c *callOptions) { c.quantity = n }
}

// resolveCaller fixes the call's credentials once, before its first
// attempt: its own user (AsUser) or token (BearerToken), else a token from
// the client's TokenSource.
func (c *Client) resolveCaller(ctx context.Context, co *callOptions) error {
	switch {
	case co.user != "":
	case co.token != "":
		co.authorization = bearerPrefix + co.token
	case c.opts.tokenSource != nil:
		tok, err := c.opts.tokenSource.Token(ctx)
		if err != nil {
			return fmt.Errorf("get bearer token: %w", err)
		}
		co.authorization = bearerPrefix + tok
	}
	return nil
}

// outgoing returns ctx with the call's credentials and the client's
// metadata.
func outgoing(ctx context.Context, co *callOptions) context.Context {
	kv := []string{mdClientDrops, "1"}
	switch {
	case co.user != "":
		kv = append(kv, mdUserID, co.user)
	case co.authorization != "":
		kv = append(kv, mdAuthorization, co.authorization)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
