package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// DrawCard spends one of the calling user's draw chances in a card-collect
// campaign for one card, through a front door. A refusal matches
// ErrNoDrawsLeft, ErrSoldOut (every card type at its cap),
// ErrCampaignClosed or ErrNotEligible. Transient failures are retried with
// the same request ID (RequestID(id) to choose it, Resume(id) to go on
// with an earlier call that failed retryably), so a retry never draws
// twice.
func (c *Client) DrawCard(ctx context.Context, campaign string, opts ...CallOption) (*flashdpb.DrawCardResponse, error) {
	req := &flashdpb.FrontDoorDrawCardRequest{CampaignId: campaign}
	co := callOpts(opts)
	co.selfTimed = true // each attempt is bounded by its deadline (see Claim)
	var out *flashdpb.DrawCardResponse
	err := c.cardCall(ctx, &req.RequestId, co, func(ctx context.Context, ep *endpoint, at attempt, resend bool) error {
		// A resend may find the door's no-draws-left hint when the store
		// drew for this request ID: it asks the store.
		req.Retry = resend
		var err error
		out, err = c.drawOnce(ctx, ep, co, req, at.deadline)
		return err
	})
	return out, err
}

// drawOnce is one attempt of a DrawCard, ending by deadline (if not zero):
// in the front door's next DrawMany call when draws are batched, else (or
// when the front door has no DrawMany) as a unary DrawCard call.
func (c *Client) drawOnce(ctx context.Context, ep *endpoint, co *callOptions, req *flashdpb.FrontDoorDrawCardRequest, deadline time.Time) (*flashdpb.DrawCardResponse, error) {
	if b := ep.draws; b != nil && !b.unsupported.Load() {
		// A copy per attempt, as for claims.
		entry := &flashdpb.DrawManyEntry{
			Draw:          &flashdpb.FrontDoorDrawCardRequest{CampaignId: req.CampaignId, RequestId: req.RequestId, Retry: req.Retry},
			Authorization: co.authorization, InsecureUserId: co.user,
		}
		resp, err := b.send(ctx, entry, deadline)
		switch {
		case err == errManyUnsupported:
		case err == nil && resp == nil:
			return nil, status.Error(codes.Internal, "front door drew a card without its record")
		default:
			return resp, err
		}
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	return unaryWithDrops(c, func(callOpts ...grpc.CallOption) (*flashdpb.DrawCardResponse, error) {
		return ep.frontDoor.DrawCard(ctx, req, callOpts...)
	})
}

// RedeemSet spends one full set of the calling user's cards for one reward
// from the pool. A refusal matches ErrNoFullSet, ErrPoolEmpty or
// ErrCampaignClosed. Retries keep the request ID, as for DrawCard.
func (c *Client) RedeemSet(ctx context.Context, campaign string, opts ...CallOption) (*flashdpb.RedeemSetResponse, error) {
	req := &flashdpb.FrontDoorRedeemSetRequest{CampaignId: campaign}
	var out *flashdpb.RedeemSetResponse
	err := c.cardCall(ctx, &req.RequestId, callOpts(opts), func(ctx context.Context, ep *endpoint, _ attempt, resend bool) error {
		// A resend may find the door remembering the pool as empty when
		// the store holds this request ID's reward: it asks the store.
		req.Retry = resend
		var err error
		out, err = unaryWithDrops(c, func(callOpts ...grpc.CallOption) (*flashdpb.RedeemSetResponse, error) {
			return ep.frontDoor.RedeemSet(ctx, req, callOpts...)
		})
		return err
	})
	return out, err
}

// GetMyCards returns the calling user's draws and cards in a campaign.
func (c *Client) GetMyCards(ctx context.Context, campaign string, opts ...CallOption) (*flashdpb.CardHolder, error) {
	var out *flashdpb.CardHolder
	err := c.do(ctx, callOpts(opts), func(ctx context.Context, ep *endpoint, _ attempt) error {
		var err error
		out, err = ep.frontDoor.GetMyCards(ctx, &flashdpb.GetMyCardsRequest{CampaignId: campaign})
		return err
	})
	return out, err
}

// cardCall runs a card mutation like Claim: the client-side drop, and one
// request ID for every attempt. call is told whether the attempt resends
// one that may have been applied.
func (c *Client) cardCall(ctx context.Context, requestID *string, co *callOptions,
	call func(ctx context.Context, ep *endpoint, at attempt, resend bool) error,
) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if drop, f := c.drops.drop(time.Now()); drop {
		c.stats.dropped.Add(1)
		return droppedError(f)
	}
	*requestID = co.requestID
	ensureRequestID(requestID)
	return c.do(ctx, co, func(ctx context.Context, ep *endpoint, at attempt) error {
		return call(ctx, ep, at, at.resend || co.resume)
	})
}

// unaryWithDrops makes a unary call and learns the drop fraction from its
// answer (degradation level 3).
func unaryWithDrops[Resp any](c *Client, call func(...grpc.CallOption) (Resp, error)) (Resp, error) {
	var header, trailer metadata.MD
	resp, err := call(grpc.Header(&header), grpc.Trailer(&trailer))
	c.drops.learn(header, trailer, time.Now())
	return resp, err
}
