package client

import (
	"context"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// AnnounceFrontDoor sends a front door's heartbeat to the leader and
// returns the live front doors and the funnel configuration. Only the
// leader keeps the live set, so it follows NOT_LEADER hints like a mutation;
// it carries no request ID (a heartbeat repeated is harmless).
func (s *Store) AnnounceFrontDoor(ctx context.Context, req *flashdpb.AnnounceFrontDoorRequest) (*flashdpb.AnnounceFrontDoorResponse, error) {
	return storeCall(ctx, s, routeLeader, req, flashdpb.StoreClient.AnnounceFrontDoor)
}
