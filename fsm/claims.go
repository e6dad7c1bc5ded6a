package fsm

import (
	"bytes"
	"container/heap"
	"fmt"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// applyClaimBatch applies each claim of a batch in order, each on its own.
// The whole entry is decoded before the first claim is applied, so a
// malformed entry stops the node before it changes anything.
func (f *FSM) applyClaimBatch(bodies [][]byte) *Result {
	claims, err := decodeClaims(bodies, f.claimScratch[:0])
	if err != nil {
		panic(fmt.Sprintf("fsm: claim batch does not decode: %v", err))
	}
	f.prefetched += f.s.prefetchClaims(claims)
	res := &Result{Outcomes: make([]Outcome, len(claims))}
	var last lastItem
	for i := range claims {
		f.s.applyClaim(&claims[i], &res.Outcomes[i], &last)
	}
	clear(claims) // drop the references into the log entry
	f.claimScratch = claims[:0]
	return res
}

// prefetchClaims hashes every claim's request and user IDs and touches the
// index slots their lookups start at. At a million entries each lookup is a
// cache (and TLB) miss; touched together, the misses overlap.
func (s *state) prefetchClaims(claims []claimRequest) uint64 {
	for i := range claims {
		c := &claims[i]
		c.requestHash = hashKey(s.idempotency.index, c.requestID)
		c.userHash = hashKey(s.users, c.userID)
	}
	// A loop of loads alone, so that the processor has many in flight.
	var sum uint64
	for i := range claims {
		sum += s.idempotency.index.prefetch(claims[i].requestHash) + s.users.prefetch(claims[i].userHash)
	}
	return sum
}

// lastItem is the item the previous claim of a batch named, with the IDs it
// named it by. A batch on one hot item then looks it up, and checks its IDs,
// once: IDs equal to ones already found valid and found in the maps are
// valid and find the same item (a claim batch adds and removes no campaign
// or item).
type lastItem struct {
	campaignID, itemID []byte
	it                 *item
}

func (l *lastItem) names(r *claimRequest) bool {
	return l.it != nil && bytes.Equal(r.campaignID, l.campaignID) && bytes.Equal(r.itemID, l.itemID)
}

// applyClaim applies one claim and writes its outcome to out (in place: an
// Outcome is 176 bytes, and a batch has hundreds).
func (s *state) applyClaim(r *claimRequest, out *Outcome, last *lastItem) {
	if !validID(r.requestID) {
		*out = Outcome{Reason: ReasonInvalidArgument, Message: msgBadRequestID}
		return
	}
	if rec, ok := findRecord(s.idempotency, r.requestHash, r.requestID); ok {
		if rec.payloadHash != claimPayloadHash(r.campaignID, r.itemID, r.userID, r.quantity) {
			*out = Outcome{Reason: ReasonRequestIDReused, Message: msgRequestIDReused}
			return
		}
		*out = s.replayOutcome(rec)
		return
	}
	id, reason, msg := s.claim(r, last)
	if reason == ReasonOK {
		out.Claim = s.claimView(id)
		return
	}
	*out = Outcome{Reason: reason, Message: msg}
	// A granted claim's record is the claim itself (its payload hash is
	// computed from it when needed); a refusal's is kept in full.
	s.idempotency.add(idempotencyRecord{
		requestID: string(r.requestID), payloadHash: claimPayloadHash(r.campaignID, r.itemID, r.userID, r.quantity),
		time: s.clock, reason: reason,
	}, r.requestHash)
}

// claim checks a claim against the state, in a fixed order so a refused
// claim gets the same reason on every node, and reserves its stock. It
// returns the new claim's ID, or why it was refused. last is the item the
// batch's previous claim named, and becomes this one's.
func (s *state) claim(r *claimRequest, last *lastItem) (id uint64, reason Reason, msg string) {
	known := last.names(r)
	switch {
	case !known && !validID(r.campaignID):
		return 0, ReasonInvalidArgument, msgBadCampaignID
	case !known && !validID(r.itemID):
		return 0, ReasonInvalidArgument, msgBadItemID
	case !validID(r.userID):
		return 0, ReasonInvalidArgument, msgBadUserID
	case r.quantity == 0:
		return 0, ReasonInvalidArgument, msgZeroQuantity
	}
	var c *campaign
	if known {
		c = last.it.campaign
	} else {
		c = s.campaigns[string(r.campaignID)]
	}
	switch {
	case c == nil:
		return 0, ReasonCampaignNotFound, msgCampaignNotFound
	case c.kind != KindFlashSale:
		return 0, ReasonWrongCampaignKind, msgNotFlashSale
	case !c.openAt(s.clock):
		return 0, ReasonCampaignClosed, msgCampaignClosed
	case s.clock < c.waveOpensAt(entryWave(r.userID, c.waveCount)):
		return 0, ReasonNotEligible, msgNotEligible
	}
	it := last.it
	if !known {
		if it = c.items[string(r.itemID)]; it == nil {
			return 0, ReasonItemNotFound, msgItemNotFound
		}
		*last = lastItem{campaignID: r.campaignID, itemID: r.itemID, it: it}
	}
	// A quantity above the limit could never be granted: it is a bad
	// argument, checked here because the limit is the item's.
	limit := it.limit()
	if r.quantity > limit {
		return 0, ReasonInvalidArgument, fmt.Sprintf("quantity %d is above the per-user limit %d", r.quantity, limit)
	}
	latest, _ := lookup(s.users, r.userHash, r.userID)
	switch {
	case s.liveQuantity(latest, it)+uint64(r.quantity) > uint64(limit):
		return 0, ReasonLimitReached, msgLimitReached
	case it.available < uint64(r.quantity):
		return 0, ReasonSoldOut, msgSoldOut
	}
	return s.reserve(r, it, latest), ReasonOK, ""
}

// reserve moves the claim's quantity from available to reserved and records
// the claim, and its request ID as the claim's idempotency record. latest is
// the user's latest claim (0: none).
func (s *state) reserve(r *claimRequest, it *item, latest uint64) uint64 {
	q := uint64(r.quantity)
	it.available = subCounter(it.available, q)
	it.reserved = addCounter(it.reserved, q)
	id := addClaim(&s.claims, claimRecord{
		created: s.clock, prevByUser: latest, item: it.number, quantity: r.quantity, state: ClaimReserved,
	}, r.requestID, r.userID)
	if latest == 0 {
		s.users.insert(r.userHash, id)
	} else {
		s.users.replace(r.userHash, latest, id)
	}
	if it.campaign.reservationTTL != 0 {
		it.campaign.expiring.push(id)
	}
	s.idempotency.addClaim(id, r.requestHash)
	s.changed = true
	return id
}

// Messages of refusals of settlement commands.
const (
	msgReleased        = "claim was released"
	msgSettled         = "claim was settled"
	msgCancelling      = "the claim's order is being cancelled"
	msgToCompensate    = "the claim's reservation expired while its order was placed: it is to be settled or its order cancelled"
	msgNotCompensating = "the claim is not to be compensated: its reservation has not expired while ordering"
)

// applySettle confirms a reservation: reserved → sold. A claim marked as
// ordering is settled also past its deadline (TO_COMPENSATE): its order went
// through, and its stock was never put back on sale. Once a settler has
// started to cancel the order (CANCELLING) it is refused. Settling a
// settled claim again is a success that changes nothing.
func (s *state) applySettle(b *fsmpb.Settle) *Result {
	id := b.GetClaimId()
	c := s.claims.get(id)
	switch {
	case c == nil:
		return refusal(ReasonClaimNotFound, msgClaimNotFound)
	case c.state == ClaimReleased:
		return s.claimResult(ReasonAlreadyReleased, msgReleased, id)
	case c.state == ClaimCancelling:
		return s.claimResult(ReasonCompensating, msgCancelling, id)
	case c.open():
		s.settle(id)
	}
	return s.claimResult(ReasonOK, "", id)
}

// applyRelease undoes a reservation: reserved → available, and the claim no
// longer counts against the user's limit. It is the end of every open
// state: the order service refused the order, or its order was cancelled.
// Releasing a released claim again is a success that changes nothing.
func (s *state) applyRelease(b *fsmpb.Release) *Result {
	id := b.GetClaimId()
	c := s.claims.get(id)
	switch {
	case c == nil:
		return refusal(ReasonClaimNotFound, msgClaimNotFound)
	case c.state == ClaimSettled:
		return s.claimResult(ReasonAlreadySettled, msgSettled, id)
	case c.open():
		s.release(id)
	}
	return s.claimResult(ReasonOK, "", id)
}

// applyMarkOrdering records that a settler is about to place the claim's
// order: reserved → ordering. Past its deadline an ordering claim is not
// released but kept to be compensated (applyExpire). Marking an ordering
// claim again is a success that changes nothing; a reservation past its
// deadline that Expire has not reached yet is marked too (its stock was
// never put back on sale).
func (s *state) applyMarkOrdering(b *fsmpb.MarkOrdering) *Result {
	id := b.GetClaimId()
	c := s.claims.get(id)
	switch {
	case c == nil:
		return refusal(ReasonClaimNotFound, msgClaimNotFound)
	case c.state == ClaimReleased:
		return s.claimResult(ReasonAlreadyReleased, msgReleased, id)
	case c.state == ClaimSettled:
		return s.claimResult(ReasonAlreadySettled, msgSettled, id)
	case c.state == ClaimToCompensate:
		return s.claimResult(ReasonCompensating, msgToCompensate, id)
	case c.state == ClaimCancelling:
		return s.claimResult(ReasonCompensating, msgCancelling, id)
	case c.state == ClaimReserved:
		s.claims.mutable(id).state = ClaimOrdering
		s.changed = true
	}
	return s.claimResult(ReasonOK, "", id)
}

// applyMarkCancelling records that a settler is about to cancel the order of
// a claim to compensate: to compensate → cancelling. From then on Settle is
// refused; Release ends it. Marking a cancelling claim again is a success
// that changes nothing.
func (s *state) applyMarkCancelling(b *fsmpb.MarkCancelling) *Result {
	id := b.GetClaimId()
	c := s.claims.get(id)
	switch {
	case c == nil:
		return refusal(ReasonClaimNotFound, msgClaimNotFound)
	case c.state == ClaimReleased:
		return s.claimResult(ReasonAlreadyReleased, msgReleased, id)
	case c.state == ClaimSettled:
		return s.claimResult(ReasonAlreadySettled, msgSettled, id)
	case c.state == ClaimReserved, c.state == ClaimOrdering:
		return s.claimResult(ReasonNotCompensating, msgNotCompensating, id)
	case c.state == ClaimToCompensate:
		s.claims.mutable(id).state = ClaimCancelling
		s.changed = true
	}
	return s.claimResult(ReasonOK, "", id)
}

func (s *state) claimResult(r Reason, msg string, id uint64) *Result {
	return &Result{Outcomes: []Outcome{{Reason: r, Message: msg, Claim: s.claimView(id)}}}
}

func (s *state) settle(id uint64) {
	c := s.claims.mutable(id)
	it, q := s.claims.item(c), uint64(c.quantity)
	it.reserved = subCounter(it.reserved, q)
	it.sold = addCounter(it.sold, q)
	c.state = ClaimSettled
	s.changed = true
	s.dropSettledFront(it.campaign)
}

func (s *state) release(id uint64) {
	c := s.claims.mutable(id)
	it, q := s.claims.item(c), uint64(c.quantity)
	it.reserved = subCounter(it.reserved, q)
	it.available = addCounter(it.available, q)
	c.state = ClaimReleased
	s.changed = true
	s.dropSettledFront(it.campaign)
}

// dropSettledFront pops the claims that no longer wait for their deadline
// off the front of the campaign's expiry queue. Without it, a sale whose reservations all
// settle in time would never run Expire, and the queue would keep every
// claim ID it ever saw; with it, the queue spans no more than the oldest
// open reservation.
func (s *state) dropSettledFront(c *campaign) {
	for c.expiring.len() > 0 && !s.claims.get(c.expiring.front()).expiring() {
		c.expiring.pop()
	}
}

// applyExpire releases every reservation whose deadline is before the
// command time, but for those marked as ordering: their order may exist, so
// they keep their stock and are to be compensated (settled, or their order
// cancelled and then released). Each campaign's queue is in deadline order,
// so this touches only the expired claims and one more per campaign.
func (s *state) applyExpire() *Result {
	released, kept := 0, 0
	for _, c := range s.campaignOrder {
		for c.expiring.len() > 0 {
			id := c.expiring.front()
			rec := s.claims.get(id)
			if !rec.expiring() {
				c.expiring.pop()
				continue
			}
			if s.claims.deadline(rec) >= s.clock {
				break
			}
			if rec.state == ClaimOrdering {
				s.claims.mutable(id).state = ClaimToCompensate
				s.changed = true
				s.dropSettledFront(c) // pops it, and the settled claims behind it
				kept++
				continue
			}
			s.release(id) // pops it, and the settled claims behind it
			released++
		}
	}
	return &Result{
		Outcomes: []Outcome{{Message: fmt.Sprintf("released %d expired reservations; %d ordering, kept to compensate", released, kept)}},
		Expired:  released, ToCompensate: kept,
	}
}

// reservationsByDeadline returns the IDs of up to limit reservations with a
// deadline, reserved or ordering (those Expire has yet to reach), earliest
// first (ties by claim ID), merging the campaigns' queues.
func (s *state) reservationsByDeadline(limit int) []uint64 {
	var cursors deadlineHeap
	for _, c := range s.campaignOrder {
		if c.expiring.len() > 0 {
			cursors = append(cursors, s.deadlineCursor(c, c.expiring.popped))
		}
	}
	heap.Init(&cursors)
	var out []uint64
	for len(out) < limit && len(cursors) > 0 {
		cur := cursors[0]
		if s.claims.get(cur.id).expiring() {
			out = append(out, cur.id)
		}
		if next := cur.pos + 1; next < cur.campaign.expiring.popped+uint64(cur.campaign.expiring.len()) {
			cursors[0] = s.deadlineCursor(cur.campaign, next)
			heap.Fix(&cursors, 0)
		} else {
			heap.Pop(&cursors)
		}
	}
	return out
}

// deadlineCursor points at position pos of a campaign's expiry queue.
type deadlineCursor struct {
	campaign *campaign
	pos      uint64 // absolute index in campaign.expiring
	id       uint64
	deadline int64
}

func (s *state) deadlineCursor(c *campaign, pos uint64) deadlineCursor {
	id := c.expiring.at(pos)
	return deadlineCursor{campaign: c, pos: pos, id: id, deadline: s.claims.deadline(s.claims.get(id))}
}

// deadlineHeap orders cursors by deadline, then claim ID.
type deadlineHeap []deadlineCursor

func (h deadlineHeap) Len() int { return len(h) }
func (h deadlineHeap) Less(i, j int) bool {
	return h[i].deadline < h[j].deadline || (h[i].deadline == h[j].deadline && h[i].id < h[j].id)
}
func (h deadlineHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)   { *h = append(*h, x.(deadlineCursor)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	last := old[len(old)-1]
	*h = old[:len(old)-1]
	return last
}
