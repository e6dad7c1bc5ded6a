package fsm

import (
	"fmt"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// Messages of refusals that can come by the million (a sold-out item): fixed
// strings, so a refusal allocates nothing.
const (
	msgRepeated         = "repeated request ID: the first result is returned"
	msgRequestIDReused  = "request ID already used with a different payload"
	msgBadRequestID     = "request ID must be 1 to 128 bytes of UTF-8 without control characters"
	msgBadCampaignID    = "campaign ID must be 1 to 128 bytes of UTF-8 without control characters"
	msgBadItemID        = "item ID must be 1 to 128 bytes of UTF-8 without control characters"
	msgBadUserID        = "user ID must be 1 to 128 bytes of UTF-8 without control characters"
	msgBadNodeID        = "node ID must be 1 to 128 bytes of UTF-8 without control characters"
	msgZeroQuantity     = "quantity must be at least 1"
	msgCampaignNotFound = "no such campaign"
	msgItemNotFound     = "no such item in this campaign"
	msgClaimNotFound    = "no such claim"
	msgNotFlashSale     = "claims are taken only in flash-sale campaigns"
	msgCampaignClosed   = "campaign is not open at this time"
	msgNotEligible      = "the user's entry wave is not open yet"
	msgLimitReached     = "per-user limit reached for this item"
	msgSoldOut          = "sold out"
)

// applyCommand applies one decoded command at its time, which never runs
// behind the previous command's: a new leader whose clock lags must not
// reopen a campaign that has ended or shorten a reservation.
func (f *FSM) applyCommand(e envelope) *Result {
	s := f.s
	s.clock = max(s.clock, e.time)
	s.idempotency.expire(s.clock)
	switch e.typ {
	case fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH:
		return f.applyClaimBatch(e.claimBodies)
	case fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD_BATCH:
		return s.applyDrawCardBatch(e.cmd.DrawCardBatch, e.cmd.GetSeed())
	}
	return s.applyOperation(e.cmd)
}

// applyOperation applies a single-operation command, recording its first
// result under its request ID if it has one.
func (s *state) applyOperation(cmd *fsmpb.Command) *Result {
	requestID := cmd.GetRequestId()
	if requestID == "" {
		return s.dispatch(cmd)
	}
	if !validID(requestID) {
		return refusal(ReasonInvalidArgument, msgBadRequestID)
	}
	hash := commandPayloadHash(cmd)
	requestHash := hashKey(s.idempotency.index, requestID)
	rec, ok := findRecord(s.idempotency, requestHash, requestID)
	if ok {
		return s.replayOperation(cmd, rec, hash)
	}
	res := s.dispatch(cmd)
	out := res.Outcomes[0]
	s.idempotency.add(idempotencyRecord{
		requestID: requestID, payloadHash: hash, time: s.clock, claimID: out.Claim.ID, reason: out.Reason, detail: res.detail,
	}, requestHash)
	return res
}

func (s *state) dispatch(cmd *fsmpb.Command) *Result {
	switch cmd.GetType() {
	case fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN:
		return s.applyCreateCampaign(cmd.CreateCampaign)
	case fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN:
		return s.applyUpdateCampaign(cmd.UpdateCampaign)
	case fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM:
		return s.applyAddItem(cmd.AddItem)
	case fsmpb.CommandType_COMMAND_TYPE_ADJUST_STOCK:
		return s.applyAdjustStock(cmd.AdjustStock)
	case fsmpb.CommandType_COMMAND_TYPE_SETTLE:
		return s.applySettle(cmd.Settle)
	case fsmpb.CommandType_COMMAND_TYPE_RELEASE:
		return s.applyRelease(cmd.Release)
	case fsmpb.CommandType_COMMAND_TYPE_MARK_ORDERING:
		return s.applyMarkOrdering(cmd.MarkOrdering)
	case fsmpb.CommandType_COMMAND_TYPE_MARK_CANCELLING:
		return s.applyMarkCancelling(cmd.MarkCancelling)
	case fsmpb.CommandType_COMMAND_TYPE_EXPIRE:
		return s.applyExpire()
	case fsmpb.CommandType_COMMAND_TYPE_REGISTER_NODE:
		return s.applyRegisterNode(cmd.RegisterNode)
	case fsmpb.CommandType_COMMAND_TYPE_SET_FRONT_DOOR_CONFIG:
		return s.applySetFrontDoorConfig(cmd.SetFrontDoorConfig)
	case fsmpb.CommandType_COMMAND_TYPE_DEFINE_CARDS:
		return s.applyDefineCards(cmd.DefineCards)
	case fsmpb.CommandType_COMMAND_TYPE_GRANT_DRAWS:
		return s.applyGrantDraws(cmd.GrantDraws)
	case fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD:
		return s.applyDrawCard(cmd.DrawCard, cmd.GetSeed())
	case fsmpb.CommandType_COMMAND_TYPE_REDEEM_SET:
		return s.applyRedeemSet(cmd.RedeemSet)
	case fsmpb.CommandType_COMMAND_TYPE_CLOSE_AND_SPLIT:
		return s.applyCloseAndSplit(cmd.CloseAndSplit)
	case fsmpb.CommandType_COMMAND_TYPE_LEASE_CLAIMS:
		return s.applyLeaseClaims(cmd.LeaseClaims)
	}
	// decodeCommand let through only the types above.
	panic(fmt.Sprintf("fsm: no handler for %v", cmd.GetType()))
}

// replayOperation answers a repeated request ID: the first result's reason,
// with the current view of what the command touched, and no change.
func (s *state) replayOperation(cmd *fsmpb.Command, rec idempotencyRecord, hash uint64) *Result {
	if rec.payloadHash != hash {
		return refusal(ReasonRequestIDReused, msgRequestIDReused)
	}
	res := &Result{Outcomes: []Outcome{s.replayOutcome(rec)}}
	if rec.reason != ReasonOK {
		return res
	}
	switch cmd.GetType() {
	case fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN:
		res.Campaign = s.campaignView(cmd.CreateCampaign.GetCampaignId())
	case fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN:
		res.Campaign = s.campaignView(cmd.UpdateCampaign.GetCampaignId())
	case fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM:
		res.Item = s.itemView(cmd.AddItem.GetCampaignId(), cmd.AddItem.GetItemId())
	case fsmpb.CommandType_COMMAND_TYPE_ADJUST_STOCK:
		res.Item = s.itemView(cmd.AdjustStock.GetCampaignId(), cmd.AdjustStock.GetItemId())
	case fsmpb.CommandType_COMMAND_TYPE_SET_FRONT_DOOR_CONFIG:
		config := s.frontDoor
		res.Config = &config
	case fsmpb.CommandType_COMMAND_TYPE_DEFINE_CARDS:
		res.Cards = s.cardsView(cmd.DefineCards.GetCampaignId())
	case fsmpb.CommandType_COMMAND_TYPE_CLOSE_AND_SPLIT:
		res.Campaign = s.campaignView(cmd.CloseAndSplit.GetCampaignId())
		res.Cards = s.cardsView(cmd.CloseAndSplit.GetCampaignId())
	case fsmpb.CommandType_COMMAND_TYPE_GRANT_DRAWS:
		res.Holder = s.holderView(cmd.GrantDraws.GetCampaignId(), cmd.GrantDraws.GetUserId())
	case fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD:
		res.Holder = s.holderView(cmd.DrawCard.GetCampaignId(), cmd.DrawCard.GetUserId())
		if c := s.campaigns[cmd.DrawCard.GetCampaignId()]; rec.detail != 0 && c != nil && c.cards != nil {
			res.CardType = c.cards.types[rec.detail-1].id
		}
	case fsmpb.CommandType_COMMAND_TYPE_REDEEM_SET:
		res.Holder = s.holderView(cmd.RedeemSet.GetCampaignId(), cmd.RedeemSet.GetUserId())
		res.Reward = rec.detail
	}
	return res
}

// replayOutcome is the outcome a repeated request ID gets.
func (s *state) replayOutcome(rec idempotencyRecord) Outcome {
	out := Outcome{Reason: rec.reason}
	if rec.reason != ReasonOK {
		out.Message = msgRepeated
	}
	if rec.claimID != 0 {
		out.Claim = s.claimView(rec.claimID)
	}
	return out
}

func refusal(r Reason, msg string) *Result {
	return &Result{Outcomes: []Outcome{{Reason: r, Message: msg}}}
}

func (s *state) campaignView(id string) *Campaign {
	c := s.campaigns[id]
	if c == nil {
		return nil
	}
	v := c.view()
	return &v
}

func (s *state) cardsView(campaignID string) *CardCollect {
	c := s.campaigns[campaignID]
	if c == nil || c.cards == nil {
		return nil
	}
	v := c.cards.view(c.id)
	return &v
}

func (s *state) holderView(campaignID, userID string) *CardHolder {
	c := s.campaigns[campaignID]
	if c == nil || c.cards == nil {
		return nil
	}
	v := c.cards.holderView(c.id, userID, c.cards.holders[userID])
	return &v
}

func (s *state) itemView(campaignID, itemID string) *Item {
	it := s.item(campaignID, itemID)
	if it == nil {
		return nil
	}
	v := it.view()
	return &v
}
