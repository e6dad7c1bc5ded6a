package client

import (
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// endpoint is one connection to a flashd server and the stubs of the
// services a client may call on it: Store and Admin on a store node,
// FrontDoor and Health on a front door. A stub is a thin wrapper over the
// connection, so keeping all of them costs nothing.
type endpoint struct {
	addr       string
	conn       *grpc.ClientConn
	admin      flashdpb.AdminClient
	store      flashdpb.StoreClient
	frontDoor  flashdpb.FrontDoorClient
	health     healthpb.HealthClient
	discovered bool        // store: learnt from a NOT_LEADER hint, not configured
	unhealthy  atomic.Bool // front door: failed its latest health check or call
	// Front door: nil when calls are not batched.
	claims *batcher[*flashdpb.ClaimManyEntry, *flashdpb.Claim]
	draws  *batcher[*flashdpb.DrawManyEntry, *flashdpb.DrawCardResponse]
}

// dial connects lazily to addr: the connection is made on the first call.
func dial(addr string, o *options) (*endpoint, error) {
	// The reconnect backoff is short, so that a restarted server is used
	// again within seconds (gRPC's default waits up to two minutes).
	reconnect := grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   reconnectDelayMax,
		},
		MinConnectTimeout: connectTimeoutMin,
	}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(reconnect),
	}, o.dialOptions...)
	conn, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &endpoint{
		addr:      addr,
		conn:      conn,
		admin:     flashdpb.NewAdminClient(conn),
		store:     flashdpb.NewStoreClient(conn),
		frontDoor: flashdpb.NewFrontDoorClient(conn),
		health:    healthpb.NewHealthClient(conn),
	}, nil
}
