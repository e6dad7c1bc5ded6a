package rpc

import (
	"time"

	"github.com/flashd/flashd/rpc/endpoint"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Defaults of the limits a store node's gRPC server puts on its clients.
// They are front doors, services and operators, fewer than a door's crowd
// but each with more calls at once; a store node is reachable too, so its
// limits stop the same attacks (frontdoor/DESIGN.md says why the figures).
const (
	DefaultConnsMax          = 4096
	DefaultConnsPerIPMax     = 1024 // every door of a cluster may come from one NAT address
	DefaultStreamsPerConnMax = 1024 // a front door forwards its users' reads on one connection
	DefaultCallsMax          = 16384
	DefaultCallTimeout       = 30 * time.Second
	DefaultConnIdleMax       = 10 * time.Minute

	storeHandshakeTimeout = 10 * time.Second
	storeHeaderBytesMax   = 16 << 10
)

// DefaultLimits are a store node's gRPC server limits. There is no age
// limit: a front door's watch stream lives on its connection, and a new
// stream starts with the whole catalog.
func DefaultLimits() endpoint.Limits {
	return endpoint.Limits{
		ConnsMax: DefaultConnsMax, ConnsPerIPMax: DefaultConnsPerIPMax,
		StreamsPerConnMax: DefaultStreamsPerConnMax, CallsMax: DefaultCallsMax,
		CallTimeout: DefaultCallTimeout, ConnIdleMax: DefaultConnIdleMax,
		HandshakeTimeout: storeHandshakeTimeout, HeaderBytesMax: storeHeaderBytesMax,
		MessageBytesMax: pb.MaxMessageBytes,
	}
}
