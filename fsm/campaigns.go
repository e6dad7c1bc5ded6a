package fsm

import (
	"fmt"
	"math"

	"github.com/flashd/flashd/fsm/fsmpb"
)

func (s *state) applyCreateCampaign(b *fsmpb.CreateCampaign) *Result {
	kind, ok := campaignKind(b.GetKind())
	switch {
	case !validID(b.GetCampaignId()):
		return refusal(ReasonInvalidArgument, msgBadCampaignID)
	case !ok:
		return refusal(ReasonInvalidArgument, fmt.Sprintf("campaign kind %v is not FLASH_SALE or CARD_COLLECT", b.GetKind()))
	case !validText(b.GetName(), nameMaxBytes):
		return refusal(ReasonInvalidArgument, "campaign name must be at most 256 bytes of UTF-8 without control characters")
	case b.GetEndUnixNano() != 0 && b.GetEndUnixNano() <= b.GetStartUnixNano():
		return refusal(ReasonInvalidArgument, "campaign end must be after its start")
	case b.GetWaveIntervalNanos() < 0:
		return refusal(ReasonInvalidArgument, "wave interval must not be negative")
	case b.GetReservationTtlNanos() < 0:
		return refusal(ReasonInvalidArgument, "reservation TTL must not be negative")
	case s.campaigns[b.GetCampaignId()] != nil:
		return refusal(ReasonAlreadyExists, "campaign already exists")
	}
	c := &campaign{
		id: b.GetCampaignId(), name: b.GetName(), kind: kind, state: StateDraft,
		start: b.GetStartUnixNano(), end: b.GetEndUnixNano(), perUserLimit: b.GetPerUserLimit(),
		waveCount: b.GetWaveCount(), waveInterval: b.GetWaveIntervalNanos(), reservationTTL: b.GetReservationTtlNanos(),
		items: make(map[string]*item),
	}
	s.addCampaign(c)
	s.changed = true
	v := c.view()
	return &Result{Outcomes: []Outcome{{}}, Campaign: &v}
}

func campaignKind(k fsmpb.CampaignKind) (CampaignKind, bool) {
	switch k {
	case fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE:
		return KindFlashSale, true
	case fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT:
		return KindCardCollect, true
	}
	return KindUnknown, false
}

// applyUpdateCampaign changes the fields that are present. A campaign moves
// DRAFT → OPEN → CLOSED, or DRAFT → CLOSED; CLOSED is final, so a closed
// campaign's times cannot change either. Setting the state it already has
// is allowed and changes nothing.
func (s *state) applyUpdateCampaign(b *fsmpb.UpdateCampaign) *Result {
	if !validID(b.GetCampaignId()) {
		return refusal(ReasonInvalidArgument, msgBadCampaignID)
	}
	c := s.campaigns[b.GetCampaignId()]
	if c == nil {
		return refusal(ReasonCampaignNotFound, msgCampaignNotFound)
	}
	next := c.state
	if b.State != nil {
		var ok bool
		if next, ok = campaignState(b.GetState()); !ok || !validTransition(c.state, next) {
			return refusal(ReasonInvalidArgument, fmt.Sprintf("campaign cannot go from %v to %v", fsmpb.CampaignState(c.state), b.GetState()))
		}
	}
	start, end := c.start, c.end
	if b.StartUnixNano != nil || b.EndUnixNano != nil {
		if c.state == StateClosed {
			return refusal(ReasonInvalidArgument, "a closed campaign's times cannot change")
		}
		start, end = b.GetStartUnixNano(), b.GetEndUnixNano()
		if b.StartUnixNano == nil {
			start = c.start
		}
		if b.EndUnixNano == nil {
			end = c.end
		}
		if end != 0 && end <= start {
			return refusal(ReasonInvalidArgument, "campaign end must be after its start")
		}
	}
	c.state, c.start, c.end = next, start, end
	s.changed = true
	v := c.view()
	return &Result{Outcomes: []Outcome{{}}, Campaign: &v}
}

func campaignState(st fsmpb.CampaignState) (CampaignState, bool) {
	switch st {
	case fsmpb.CampaignState_CAMPAIGN_STATE_DRAFT:
		return StateDraft, true
	case fsmpb.CampaignState_CAMPAIGN_STATE_OPEN:
		return StateOpen, true
	case fsmpb.CampaignState_CAMPAIGN_STATE_CLOSED:
		return StateClosed, true
	}
	return StateUnknown, false
}

func validTransition(from, to CampaignState) bool {
	switch {
	case from == to:
		return true
	case from == StateDraft:
		return to == StateOpen || to == StateClosed
	case from == StateOpen:
		return to == StateClosed
	}
	return false
}

func (s *state) applyAddItem(b *fsmpb.AddItem) *Result {
	switch {
	case !validID(b.GetCampaignId()):
		return refusal(ReasonInvalidArgument, msgBadCampaignID)
	case !validID(b.GetItemId()):
		return refusal(ReasonInvalidArgument, msgBadItemID)
	}
	c := s.campaigns[b.GetCampaignId()]
	switch {
	case c == nil:
		return refusal(ReasonCampaignNotFound, msgCampaignNotFound)
	case c.state == StateClosed:
		return refusal(ReasonCampaignClosed, "campaign is closed")
	case c.items[b.GetItemId()] != nil:
		return refusal(ReasonAlreadyExists, "item already exists in this campaign")
	}
	it := &item{
		campaign: c, id: b.GetItemId(), perUserLimit: b.GetPerUserLimit(),
		total: b.GetStock(), available: b.GetStock(),
	}
	it.number = s.claims.addItem(it)
	c.addItem(it)
	s.changed = true
	v := it.view()
	return &Result{Outcomes: []Outcome{{}}, Item: &v}
}

// applyAdjustStock adds stock (delta > 0) or takes back stock that is still
// available (delta < 0); reserved and sold stock is never taken back.
func (s *state) applyAdjustStock(b *fsmpb.AdjustStock) *Result {
	switch {
	case !validID(b.GetCampaignId()):
		return refusal(ReasonInvalidArgument, msgBadCampaignID)
	case !validID(b.GetItemId()):
		return refusal(ReasonInvalidArgument, msgBadItemID)
	case b.GetDelta() == 0:
		return refusal(ReasonInvalidArgument, "stock delta must not be zero")
	}
	c := s.campaigns[b.GetCampaignId()]
	if c == nil {
		return refusal(ReasonCampaignNotFound, msgCampaignNotFound)
	}
	it := c.items[b.GetItemId()]
	if it == nil {
		return refusal(ReasonItemNotFound, msgItemNotFound)
	}
	delta := b.GetDelta()
	if delta > 0 {
		if it.total > math.MaxUint64-uint64(delta) {
			return refusal(ReasonInvalidArgument, "stock total would overflow")
		}
		it.total = addCounter(it.total, uint64(delta))
		it.available = addCounter(it.available, uint64(delta))
	} else {
		removed := uint64(-(delta + 1)) + 1 // -delta without overflow at math.MinInt64
		if removed > it.available {
			return refusal(ReasonInsufficientStock, fmt.Sprintf("cannot remove %d: %d available", removed, it.available))
		}
		it.total = subCounter(it.total, removed)
		it.available = subCounter(it.available, removed)
	}
	s.changed = true
	v := it.view()
	return &Result{Outcomes: []Outcome{{}}, Item: &v}
}
