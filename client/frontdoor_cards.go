package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

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
	var out *flashdpb.DrawCardResponse
	err := c.cardCall(ctx, &req.RequestId, opts, func(ctx context.Context, ep *endpoint, resend bool, callOpts ...grpc.CallOption) error {
		// A resend may find the door's no-draws-left hint when the store
		// drew for this request ID: it asks the store.
		req.Retry = resend
		var err error
		out, err = ep.frontDoor.DrawCard(ctx, req, callOpts...)
		return err
	})
	return out, err
}

// RedeemSet spends one full set of the calling user's cards for one reward
// from the pool. A refusal matches ErrNoFullSet, ErrPoolEmpty or
// ErrCampaignClosed. Retries keep the request ID, as for DrawCard.
func (c *Client) RedeemSet(ctx context.Context, campaign string, opts ...CallOption) (*flashdpb.RedeemSetResponse, error) {
	req := &flashdpb.FrontDoorRedeemSetRequest{CampaignId: campaign}
	var out *flashdpb.RedeemSetResponse
	err := c.cardCall(ctx, &req.RequestId, opts, func(ctx context.Context, ep *endpoint, resend bool, callOpts ...grpc.CallOption) error {
		// A resend may find the door remembering the pool as empty when
		// the store holds this request ID's reward: it asks the store.
		req.Retry = resend
		var err error
		out, err = ep.frontDoor.RedeemSet(ctx, req, callOpts...)
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

// cardCall runs a card mutation like Claim: the client-side drop, one
// request ID for every attempt, and the drop fraction learnt from answers.
// call is told whether the attempt resends one that may have been applied.
func (c *Client) cardCall(ctx context.Context, requestID *string, opts []CallOption,
	call func(ctx context.Context, ep *endpoint, resend bool, callOpts ...grpc.CallOption) error,
) error {
	co := callOpts(opts)
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
		var header, trailer metadata.MD
		err := call(ctx, ep, at.resend || co.resume, grpc.Header(&header), grpc.Trailer(&trailer))
		c.drops.learn(header, trailer, time.Now())
		return err
	})
}
