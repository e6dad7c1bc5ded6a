package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// invoke runs one unary RPC under the retry policy and returns the answer of
// the attempt that succeeded.
func invoke[Resp any](ctx context.Context, s *Store, r route, call func(context.Context, *endpoint) (Resp, error)) (Resp, error) {
	var resp Resp
	err := s.do(ctx, r, func(ctx context.Context, ep *endpoint) error {
		var err error
		resp, err = call(ctx, ep)
		return err
	})
	if err != nil {
		var zero Resp
		return zero, err
	}
	return resp, nil
}

// adminCall runs an Admin RPC, given as a method expression such as
// flashdpb.AdminClient.AddItem.
func adminCall[Req, Resp any](ctx context.Context, s *Store, r route, req Req,
	rpc func(flashdpb.AdminClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	return invoke(ctx, s, r, func(ctx context.Context, ep *endpoint) (Resp, error) {
		return rpc(ep.admin, ctx, req)
	})
}

// storeCall runs a Store RPC, given as a method expression such as
// flashdpb.StoreClient.Settle.
func storeCall[Req, Resp any](ctx context.Context, s *Store, r route, req Req,
	rpc func(flashdpb.StoreClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	return invoke(ctx, s, r, func(ctx context.Context, ep *endpoint) (Resp, error) {
		return rpc(ep.store, ctx, req)
	})
}

// readRoute returns where a read of the given consistency may go.
func readRoute(c flashdpb.Consistency) route {
	if c == flashdpb.Consistency_CONSISTENCY_STALE {
		return routeAny
	}
	return routeLeader
}
