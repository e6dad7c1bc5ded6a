package client

import (
	"context"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

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

// checkHealth asks every front door for its health at once (the standard
// grpc.health.v1 service, the whole server) and marks the ones that do not
// say SERVING within healthCheckTimeout. Close cuts a round short: it
// closes the connections.
func (c *Client) checkHealth(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, ep := range c.endpoints {
		wg.Go(func() {
			resp, err := ep.health.Check(ctx, &healthpb.HealthCheckRequest{})
			ep.unhealthy.Store(err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING)
		})
	}
	wg.Wait()
}
