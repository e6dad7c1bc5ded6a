package client

import (
	"context"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// frontDoorService is the service whose health a Client checks
// (flashdpb.FrontDoor_ServiceDesc.ServiceName).
const frontDoorService = "flashd.v1.FrontDoor"

// healthLoop asks every front door for its health each interval until the
// client is closed.
func (c *Client) healthLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.healthInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.checkHealth(context.Background())
	}
}

// checkHealth asks every front door at once for the health of its
// flashd.v1.FrontDoor service (the standard grpc.health.v1 service) and
// marks the ones that do not say SERVING within healthCheckTimeout. A front
// door says NOT_SERVING until it is in step with the store. Close cuts a
// round short: it closes the connections.
func (c *Client) checkHealth(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, ep := range c.endpoints {
		wg.Go(func() {
			resp, err := ep.health.Check(ctx, &healthpb.HealthCheckRequest{Service: frontDoorService})
			ep.unhealthy.Store(err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING)
		})
	}
	wg.Wait()
}
