package fsm

import (
	"fmt"
	"slices"
	"strings"
)

// checkInvariants checks, in one pass over all state:
//   - every item: available + reserved + sold == total, without overflow;
//   - the claims agree with the counters: per item, the open (RESERVED,
//     ORDERING, TO_COMPENSATE, CANCELLING) quantities sum to reserved and
//     the SETTLED ones to sold;
//   - a claim is TO_COMPENSATE or CANCELLING only past its deadline;
//   - per user and item, the live (open + settled) quantity is within
//     the effective per-user limit;
//   - claim IDs are dense from 1 (they are positions), every claim's item
//     and campaign exist, claims were created in ID order, and the per-user
//     chains and index hold every claim once;
//   - the idempotency index and its queues hold the same records, in order;
//   - every RESERVED or ORDERING claim with a deadline is in its campaign's
//     expiry queue, which is in deadline order and starts with one;
//   - card-collect campaigns: no type issued above its cap, cards issued =
//     held + redeemed, every user's draws granted = left + drawn (so never
//     negative) within the per-user maximum, rewards given <= the pool, and
//     a split's payouts sum to the pot, in user order, within a cent;
//   - settlement feeds: no open claim below a cursor, every lease at or
//     past its cursor.
func (s *state) checkInvariants() error {
	for _, check := range []func() error{s.checkCampaigns, s.checkClaims, s.checkIdempotency, s.checkExpiry, s.checkAllCards, s.checkFeeds} {
		if err := check(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvariant, err)
		}
	}
	return nil
}

// checkAllCards checks every card-collect campaign (see checkCards).
func (s *state) checkAllCards() error {
	for _, c := range s.campaignOrder {
		if c.cards != nil {
			if err := s.checkCards(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *state) checkCampaigns() error {
	if len(s.campaignOrder) != len(s.campaigns) ||
		!slices.IsSortedFunc(s.campaignOrder, func(a, b *campaign) int { return strings.Compare(a.id, b.id) }) {
		return fmt.Errorf("campaign order does not match the campaigns")
	}
	items := 0
	for _, c := range s.campaignOrder {
		if s.campaigns[c.id] != c || len(c.itemOrder) != len(c.items) {
			return fmt.Errorf("campaign %q: index does not match", c.id)
		}
		items += len(c.itemOrder)
		for i, it := range c.itemOrder {
			if c.items[it.id] != it || it.campaign != c || (i > 0 && c.itemOrder[i-1].id >= it.id) ||
				int(it.number) >= len(s.claims.items) || s.claims.items[it.number] != it {
				return fmt.Errorf("item %q/%q: index does not match", c.id, it.id)
			}
			sum := it.available + it.reserved
			if sum < it.available || sum+it.sold < sum || sum+it.sold != it.total {
				return fmt.Errorf("item %q/%q: available %d + reserved %d + sold %d != total %d",
					c.id, it.id, it.available, it.reserved, it.sold, it.total)
			}
		}
	}
	if items != len(s.claims.items) {
		return fmt.Errorf("%d items numbered, campaigns hold %d", len(s.claims.items), items)
	}
	return nil
}

func (s *state) checkClaims() error {
	if uint64(len(s.claims.chunks)) != (s.claims.n+claimChunkLen-1)/claimChunkLen {
		return fmt.Errorf("claim table holds %d chunks for %d claims", len(s.claims.chunks), s.claims.n)
	}
	reserved := make(map[*item]uint64)
	sold := make(map[*item]uint64)
	var created int64
	for id := uint64(1); id <= s.claims.len(); id++ {
		c := s.claims.get(id)
		if err := s.checkClaim(id, c, created); err != nil {
			return err
		}
		created = c.created
		switch it := s.claims.item(c); {
		case c.open():
			reserved[it] += uint64(c.quantity)
		case c.state == ClaimSettled:
			sold[it] += uint64(c.quantity)
		}
	}
	for _, c := range s.campaignOrder {
		for _, it := range c.itemOrder {
			if reserved[it] != it.reserved || sold[it] != it.sold {
				return fmt.Errorf("item %q/%q: claims hold %d reserved and %d sold, counters say %d and %d",
					c.id, it.id, reserved[it], sold[it], it.reserved, it.sold)
			}
		}
	}
	return s.checkUsers()
}

// checkClaim checks one claim record on its own and against the claims
// before it.
func (s *state) checkClaim(id uint64, c *claimRecord, prevCreated int64) error {
	if int(c.item) >= len(s.claims.items) {
		return fmt.Errorf("claim %d: its item does not exist", id)
	}
	t := &s.claims
	switch it := t.item(c); {
	case s.campaigns[it.campaign.id] != it.campaign || it.campaign.items[it.id] != it:
		return fmt.Errorf("claim %d: its item does not exist", id)
	case c.state == ClaimUnknown || c.state >= claimStates:
		return fmt.Errorf("claim %d: state %d", id, c.state)
	case (c.state == ClaimToCompensate || c.state == ClaimCancelling) && (t.deadline(c) == 0 || t.deadline(c) >= s.clock):
		return fmt.Errorf("claim %d: state %d before its deadline %d (now %d)", id, c.state, t.deadline(c), s.clock)
	case c.quantity == 0 || c.requestLen == 0 || c.userLen == 0:
		return fmt.Errorf("claim %d: malformed record", id)
	case c.created < prevCreated || c.created > s.clock:
		return fmt.Errorf("claim %d: created at %d, out of order", id, c.created)
	case c.prevByUser >= id || (c.prevByUser != 0 && t.userID(t.get(c.prevByUser)) != t.userID(c)):
		return fmt.Errorf("claim %d: user chain points at claim %d of another user", id, c.prevByUser)
	}
	return nil
}

// itemQuantity is a user's live quantity of one item.
type itemQuantity struct {
	item     *item
	quantity uint64
}

// checkUsers walks every user's claim chain from the index: each claim must
// be on exactly one chain, each chain's head must be what the index finds
// for its user, and no user's live quantity of an item may exceed its limit.
func (s *state) checkUsers() error {
	visited := make([]bool, s.claims.len())
	walked := uint64(0)
	var err error
	var held []itemQuantity // this user's, per item; users hold few items
	s.users.each(func(head uint64) {
		if err != nil {
			return
		}
		c := s.claims.get(head)
		if c == nil {
			err = fmt.Errorf("user index points at claim %d, which does not exist", head)
			return
		}
		user := s.claims.userID(c)
		if got, _, _ := findRef(s.users, user); got != head {
			err = fmt.Errorf("user index: %q leads to claim %d, not %d", user, got, head)
			return
		}
		held = held[:0]
		for id := head; id != 0 && err == nil; id = s.claims.get(id).prevByUser {
			if visited[id-1] {
				err = fmt.Errorf("claim %d is on two users' chains", id)
			}
			visited[id-1] = true
			walked++
			held = s.addHeld(held, s.claims.get(id))
		}
		for _, h := range held {
			if err == nil && h.quantity > uint64(h.item.limit()) {
				err = fmt.Errorf("user %q holds %d of item %q, above its limit %d", user, h.quantity, h.item.id, h.item.limit())
			}
		}
	})
	if err == nil && walked != s.claims.len() {
		err = fmt.Errorf("user chains reach %d of %d claims", walked, s.claims.len())
	}
	return err
}

func (s *state) addHeld(held []itemQuantity, c *claimRecord) []itemQuantity {
	if !c.live() {
		return held
	}
	it := s.claims.item(c)
	for i := range held {
		if held[i].item == it {
			held[i].quantity += uint64(c.quantity)
			return held
		}
	}
	return append(held, itemQuantity{it, uint64(c.quantity)})
}

func (s *state) checkIdempotency() error {
	st := s.idempotency
	live := 0
	st.index.each(func(uint64) { live++ })
	if st.index.len() != st.order.len() || live != st.order.len() {
		return fmt.Errorf("idempotency index holds %d records (counts %d), queue %d", live, st.index.len(), st.order.len())
	}
	var err error
	nextSide, lastClaim, lastTime := st.side.popped, uint64(0), int64(0)
	st.order.each(func(ref uint64) bool {
		switch {
		case ref&sideRef != 0 && ref&^sideRef != nextSide:
			err = fmt.Errorf("idempotency queue: side record %d out of order", ref&^sideRef)
		case ref&sideRef == 0 && (ref <= lastClaim || s.claims.get(ref) == nil):
			err = fmt.Errorf("idempotency queue: claim %d out of order or missing", ref)
		case st.timeOf(ref) < lastTime:
			err = fmt.Errorf("idempotency queue: record %#x older than the one before it", ref)
		}
		if got, _, ok := findRef(st.index, st.requestIDOf(ref)); err == nil && (!ok || got != indexRef(ref)) {
			err = fmt.Errorf("idempotency index: %q does not lead to its record", st.requestIDOf(ref))
		}
		if ref&sideRef != 0 {
			nextSide++
		} else {
			lastClaim = ref
		}
		lastTime = st.timeOf(ref)
		return err == nil
	})
	if err == nil && nextSide != st.side.popped+uint64(st.side.len()) {
		err = fmt.Errorf("idempotency side queue holds %d records the queue does not name", st.side.popped+uint64(st.side.len())-nextSide)
	}
	return err
}

func (s *state) checkExpiry() error {
	want := make(map[*campaign]int) // reservations with a deadline
	for id := uint64(1); id <= s.claims.len(); id++ {
		if c := s.claims.get(id); c.expiring() && s.claims.deadline(c) != 0 {
			want[s.claims.item(c).campaign]++
		}
	}
	for _, c := range s.campaignOrder {
		if err := s.checkExpiryQueue(c, want[c]); err != nil {
			return fmt.Errorf("campaign %q expiry queue: %w", c.id, err)
		}
	}
	return nil
}

func (s *state) checkExpiryQueue(c *campaign, want int) error {
	var err error
	found, last := 0, uint64(0)
	c.expiring.each(func(id uint64) bool {
		rec := s.claims.get(id)
		switch {
		case rec == nil || s.claims.item(rec).campaign != c || id <= last:
			err = fmt.Errorf("claim %d is out of place", id)
		case last == 0 && !rec.expiring():
			err = fmt.Errorf("front claim %d is not reserved or ordering", id)
		case last != 0 && s.claims.deadline(rec) < s.claims.deadline(s.claims.get(last)):
			err = fmt.Errorf("claim %d is out of deadline order", id)
		case rec.expiring():
			found++
		}
		last = id
		return err == nil
	})
	if err == nil && found != want {
		err = fmt.Errorf("holds %d of the %d reservations with a deadline", found, want)
	}
	return err
}
