package frontdoor

import (
	"context"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// cardTimeout bounds one card call to the store.
const cardTimeout = 5 * time.Second

// CardStore is what the card-collect calls need of the store, beside Store.
// The client library's store (NewStoreClient) has it; a Store without it
// answers card calls UNIMPLEMENTED.
type CardStore interface {
	DrawCardBatch(ctx context.Context, req *pb.DrawCardBatchRequest) (*pb.DrawCardBatchResponse, error)
	RedeemSet(ctx context.Context, req *pb.RedeemSetRequest) (*pb.RedeemSetResponse, error)
	GetCards(ctx context.Context, req *pb.GetCardsRequest) (*pb.GetCardsResponse, error)
}

var (
	errNoCardStore    = status.Error(codes.Unimplemented, "this front door's store takes no card calls")
	errNotCardCollect = newStatusError(codes.InvalidArgument, reasonName(pb.Reason_REASON_WRONG_CAMPAIGN_KIND), "this campaign has no cards", nil, 0)
	errPoolEmpty      = newStatusError(codes.FailedPrecondition, reasonName(pb.Reason_REASON_POOL_EMPTY), "every reward of the pool has been given", nil, 0)
	errNoDrawsLeft    = newStatusError(codes.FailedPrecondition, reasonName(pb.Reason_REASON_NO_DRAWS_LEFT), "no draw chance left", nil, 0)
)

// poolsEmpty remembers the card campaigns whose reward pool the store said
// is empty: a pool never refills, so RedeemSet is then answered here.
type poolsEmpty struct{ m sync.Map }

// DrawCard spends one of the caller's draw chances for one card, through
// the funnel's stages 1 to 5 (authentication, frequency control, the global
// share, degradation, validation), the no-draws-left hints, then the draws'
// coalescer: one store log entry for many draws.
func (s *Server) DrawCard(ctx context.Context, req *pb.FrontDoorDrawCardRequest) (*pb.DrawCardResponse, error) {
	s.door.setDropHeader(ctx)
	return s.door.DrawCard(ctx, req)
}

// RedeemSet spends one full set of the caller's cards for one reward.
func (s *Server) RedeemSet(ctx context.Context, req *pb.FrontDoorRedeemSetRequest) (*pb.RedeemSetResponse, error) {
	s.door.setDropHeader(ctx)
	return s.door.RedeemSet(ctx, req)
}

// GetMyCards is the caller's draws and cards.
func (s *Server) GetMyCards(ctx context.Context, req *pb.GetMyCardsRequest) (*pb.CardHolder, error) {
	s.door.setDropHeader(ctx)
	return s.door.GetMyCards(ctx, req)
}

// DrawCard: see Server.DrawCard.
func (d *Door) DrawCard(ctx context.Context, req *pb.FrontDoorDrawCardRequest) (*pb.DrawCardResponse, error) {
	c := d.callerOf(ctx)
	p, err := d.admitDraw(&c, req, d.cfg.Now())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	res := d.draws.submit(ctx, p)
	if res.err != nil {
		return nil, res.err
	}
	d.m.reads.WithLabelValues("DrawCard", "ok").Inc()
	return res.value, nil
}

// admitDraw runs a draw through the funnel and the no-draws-left hint and
// returns it ready for the draws' coalescer, or the refusal.
func (d *Door) admitDraw(c *caller, req *pb.FrontDoorDrawCardRequest, now time.Time) (*pendingDraw, error) {
	_, user, err := d.admitCard(c, "DrawCard", req.GetCampaignId(), req.GetRequestId(), true)
	if err != nil {
		return nil, err
	}
	key := userCampaignKey{user, req.GetCampaignId()}
	// A retry may be of a draw the store made: only the store can say.
	bypass := req.GetRetry() && req.GetRequestId() != "" && d.bypass.AllowN(now, 1)
	if !bypass && d.drawHints.noDrawsLeft(key, req.GetRequestId(), now) {
		d.m.reads.WithLabelValues("DrawCard", "no_draws_left_cached").Inc()
		return nil, errNoDrawsLeft
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		requestID = client.NewRequestID()
	}
	p := &pendingDraw{key: key, bypass: bypass}
	p.req = pb.DrawCardRequest{CampaignId: req.GetCampaignId(), UserId: user, RequestId: requestID}
	return p, nil
}

// pendingDraw is a draw admitted to the draws' coalescer.
type pendingDraw struct {
	waiter[*pendingDraw, *pb.DrawCardResponse]
	req    pb.DrawCardRequest
	key    userCampaignKey
	bypass bool // a retry sent past the hints: never answered from them, nothing learnt from its refusal
}

func (p *pendingDraw) waiting() *waiter[*pendingDraw, *pb.DrawCardResponse] { return &p.waiter }

// drawSender is the draws' coalescer's batchSender: one DrawCardBatch.
func (d *Door) drawSender(cs CardStore) batchSender[*pendingDraw, *pb.DrawCardResponse] {
	return func(ctx context.Context, batch []*pendingDraw) ([]result[*pb.DrawCardResponse], error) {
		req := &pb.DrawCardBatchRequest{Draws: make([]*pb.DrawCardRequest, len(batch))}
		for i, p := range batch {
			req.Draws[i] = &p.req
		}
		resp, err := cs.DrawCardBatch(ctx, req)
		if err == nil && len(resp.GetResults()) != len(batch) {
			err = errBadBatchAnswer
		}
		return d.answerDraws(batch, resp, err), err
	}
}

// drawIsStale refuses a draw whose user the door learnt, while it waited,
// to have no draw left.
func (d *Door) drawIsStale(p *pendingDraw) error {
	if !p.bypass && d.drawHints.noDrawsLeft(p.key, p.req.RequestId, d.cfg.Now()) {
		d.m.reads.WithLabelValues("DrawCard", "no_draws_left_cached").Inc()
		return errNoDrawsLeft
	}
	return nil
}

// answerDraws turns the store's answer to a draw batch into each draw's
// result, as DrawCard answered when each draw was its own store call, and
// learns who has no draw left (a granted draw that left none, or a
// NO_DRAWS_LEFT refusal of a draw that is not a retry: the store may be
// replaying an old answer) and the request IDs of granted draws, whose
// repeats the hint lets through to the store.
func (d *Door) answerDraws(batch []*pendingDraw, resp *pb.DrawCardBatchResponse, err error) []result[*pb.DrawCardResponse] {
	out := make([]result[*pb.DrawCardResponse], len(batch))
	if err != nil {
		d.log.Debug("draw batch failed", "draws", len(batch), "err", err)
		for i := range out {
			out[i].err = d.cardError("DrawCard", err)
		}
		return out
	}
	now := d.cfg.Now()
	for i, r := range resp.GetResults() {
		p := batch[i]
		switch reason := r.GetReason(); {
		case reason == pb.Reason_REASON_UNSPECIFIED:
			h := r.GetDraw().GetHolder()
			d.drawHints.learnDraw(p.key, p.req.RequestId, h != nil && h.GetDrawsLeft() == 0, now)
			out[i].value = r.GetDraw()
			out[i].value.RequestId = p.req.RequestId
		default:
			if reason == pb.Reason_REASON_NO_DRAWS_LEFT && !p.bypass {
				d.drawHints.learnNoDraws(p.key, now)
			}
			d.m.reads.WithLabelValues("DrawCard", "refused").Inc()
			out[i].err = newStatusError(reasonCode(reason), reasonName(reason), r.GetMessage(), nil, 0)
		}
	}
	return out
}

// RedeemSet: see Server.RedeemSet.
func (d *Door) RedeemSet(ctx context.Context, req *pb.FrontDoorRedeemSetRequest) (*pb.RedeemSetResponse, error) {
	c := d.callerOf(ctx)
	cs, user, err := d.admitCard(&c, "RedeemSet", req.GetCampaignId(), req.GetRequestId(), true)
	if err != nil {
		return nil, err
	}
	// A retry may be of a redemption the store granted before the pool
	// ran out: it asks the store, which answers with its first result.
	bypass := req.GetRetry() && req.GetRequestId() != "" && d.bypass.AllowN(d.cfg.Now(), 1)
	if _, empty := d.pools.m.Load(req.GetCampaignId()); empty && !bypass {
		d.m.reads.WithLabelValues("RedeemSet", "pool_empty_cached").Inc()
		return nil, errPoolEmpty
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		requestID = client.NewRequestID()
	}
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	resp, err := cs.RedeemSet(ctx, &pb.RedeemSetRequest{CampaignId: req.GetCampaignId(), UserId: user, RequestId: requestID})
	if err != nil {
		if statusReason(err) == reasonName(pb.Reason_REASON_POOL_EMPTY) {
			d.pools.m.Store(req.GetCampaignId(), true)
		}
		return nil, d.cardError("RedeemSet", err)
	}
	d.m.reads.WithLabelValues("RedeemSet", "ok").Inc()
	resp.RequestId = requestID
	return resp, nil
}

// GetMyCards: see Server.GetMyCards. A linearizable read, so a card just
// drawn is in it.
func (d *Door) GetMyCards(ctx context.Context, req *pb.GetMyCardsRequest) (*pb.CardHolder, error) {
	c := d.callerOf(ctx)
	cs, user, err := d.admitCard(&c, "GetMyCards", req.GetCampaignId(), "", false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := cs.GetCards(ctx, &pb.GetCardsRequest{CampaignId: req.GetCampaignId(), UserId: user})
	if err != nil {
		return nil, d.cardError("GetMyCards", err)
	}
	d.m.reads.WithLabelValues("GetMyCards", "ok").Inc()
	return resp.GetHolder(), nil
}

// admitCard runs a card call through the funnel's stages 1 to 5, counted
// with the claims' stages, and returns the caller. open asks that the
// campaign be open now (draws and redemptions; not reads).
func (d *Door) admitCard(c *caller, method, campaignID, requestID string, open bool) (CardStore, string, error) {
	cs, ok := d.store.(CardStore)
	if !ok {
		return nil, "", errNoCardStore
	}
	now := d.cfg.Now()
	user, err := d.admitCaller(c, d.funnel.Load(), now, open)
	if err != nil {
		return nil, "", err
	}
	if err := d.validateCard(campaignID, requestID, user, open, now); err != nil {
		d.m.reads.WithLabelValues(method, "refused_early").Inc()
		return nil, "", err
	}
	d.m.validOK.Inc()
	return cs, user, nil
}

// validateCard checks what the catalog knows: the campaign exists, is a
// card-collect campaign, and (open) is open to this user now.
func (d *Door) validateCard(campaignID, requestID, user string, open bool, now time.Time) error {
	if err := pb.ValidateID("campaign id", campaignID); err != nil {
		d.m.validBad.Inc()
		return invalidArgument(err)
	}
	if requestID != "" {
		if err := pb.ValidateID("request id", requestID); err != nil {
			d.m.validBad.Inc()
			return invalidArgument(err)
		}
	}
	var info *campaignInfo
	if ce := d.catalog.campaign(campaignID); ce != nil {
		info = ce.info.Load()
	}
	switch {
	case info == nil && d.catalog.synced.Load():
		d.m.validNoCampaign.Inc()
		return errCampaignNotFound
	case info == nil:
		return nil // the store decides
	case info.kind != pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT:
		d.m.validWrongKind.Inc()
		return errNotCardCollect
	case !open:
		return nil
	}
	early := now.Add(clockSkewAllowance).UnixNano()
	if info.state != pb.CampaignState_CAMPAIGN_STATE_OPEN || early < info.start || (info.end != 0 && now.UnixNano() >= info.end) {
		d.m.validClosed.Inc()
		return errCampaignClosed
	}
	if info.waveCount > 1 {
		w := EntryWave(user, info.waveCount)
		if opens := info.waveOpensAt(w); early < opens {
			d.m.validNotEligible.Inc()
			return notEligible(w, time.Unix(0, opens), now)
		}
	}
	return nil
}

// cardError passes a store refusal on with its reason, and turns any other
// failure into the front door's own status (no store addresses).
func (d *Door) cardError(method string, err error) error {
	switch code := status.Code(err); code {
	case codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument, codes.AlreadyExists:
		reason := statusReason(err)
		d.m.reads.WithLabelValues(method, "refused").Inc()
		return newStatusError(code, reason, status.Convert(err).Message(), nil, 0)
	}
	d.m.reads.WithLabelValues(method, "store_error").Inc()
	return readError(err)
}

// statusReason is the google.rpc.ErrorInfo reason of a status error.
func statusReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}
