package frontdoor

import (
	"time"

	"github.com/flashd/flashd/rpc/endpoint"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Defaults of the limits a front door's gRPC server puts on its clients,
// sized for a crowd of app users and against its worst members (DESIGN.md,
// "A door that survives hostile clients", says why these figures).
const (
	DefaultConnsMax          = 10_000
	DefaultConnsPerIPMax     = 256
	DefaultStreamsPerConnMax = 256
	DefaultCallsMax          = 10_000
	DefaultConnIdleMax       = 2 * time.Minute
	DefaultConnAgeMax        = 30 * time.Minute
	DefaultConnAgeGrace      = 30 * time.Second

	// doorHandshakeTimeout closes a connection that has not opened HTTP/2
	// (nor finished TLS) by then.
	doorHandshakeTimeout = 10 * time.Second
	// doorHeaderBytesMax: a bearer token is at most 4 KiB (token package);
	// four times that leaves room for every other header.
	doorHeaderBytesMax = 16 << 10
)

// DefaultLimits are a front door's gRPC server limits. A call's default
// deadline is the claim timeout (DefaultClaimTimeout, --claim-timeout).
func DefaultLimits() endpoint.Limits {
	return endpoint.Limits{
		ConnsMax: DefaultConnsMax, ConnsPerIPMax: DefaultConnsPerIPMax,
		StreamsPerConnMax: DefaultStreamsPerConnMax, CallsMax: DefaultCallsMax,
		CallTimeout: DefaultClaimTimeout,
		ConnIdleMax: DefaultConnIdleMax, ConnAgeMax: DefaultConnAgeMax, ConnAgeGrace: DefaultConnAgeGrace,
		HandshakeTimeout: doorHandshakeTimeout,
		HeaderBytesMax:   doorHeaderBytesMax,
		// A ClaimMany of ManyMax entries with ordinary tokens is well under it.
		MessageBytesMax: pb.MaxMessageBytes,
	}
}
