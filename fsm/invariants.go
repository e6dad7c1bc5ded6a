package fsm

import (
	"fmt"
	"slices"
	"strings"
)

// checkInvariants checks, in one pass over all state:
//   - every item: available + reserved + sold == total, without overflow;
//   - the claims agree with the counters: per item, the RESERVED quantities
//     sum to reserved and the SETTLED ones to sold;
//   - per user and item, the live (reserved + settled) quantity is within
//     the effective per-user limit;
//   - claim IDs are dense from 1 (they are positions), every claim's item
//     and campaign exist, claims were created in ID order, and the per-user
//     chains and index hold every claim once;
//   - the idempotency index and its queues hold the same records, in order;
//   - every reservation with a deadline is in its campaign's expiry queue,
//     which is in deadline order and starts with a reservation.
func (s *state) checkInvariants() error {
	for _, check := range []func() error{s.checkCampaigns, s.checkClaims, s.checkIdempotency, s.checkExpiry} {
		if err := check(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvariant, err)
		}
	}
	return nil
}

func (s *state) checkCampaigns() error {
	if len(s.campaignOrder) != len(s.campaigns) ||
		!slices.IsSortedFunc(s.campaignOrder, func(a, b *campaign) int { return strings.Compare(a.id, b.id) }) {
		return fmt.Errorf("campaign order does not match the campaigns")
	}
	for _, c := range s.campaignOrder {
		if s.campaigns[c.id] != c || len(c.itemOrder) != len(c.items) {
			return fmt.Errorf("campaign %q: index does not match", c.id)
		}
		for i, it := range c.itemOrder {
			if c.items[it.id] != it || it.campaign != c || (i > 0 && c.itemOrder[i-1].id >= it.id) {
				return fmt.Errorf("item %q/%q: index does not match", c.id, it.id)
			}
			sum := it.available + it.reserved
			if sum < it.available || sum+it.sold < sum || sum+it.sold != it.total {
				return fmt.Errorf("item %q/%q: available %d + reserved %d + sold %d != total %d",
					c.id, it.id, it.available, it.reserved, it.sold, it.total)
			}
		}
	}
	return nil
}

// userItem is a user's claims on one item, for the per-user limit check.
type userItem struct {
	user string
	item *item
}

func (s *state) checkClaims() error {
	if uint64(len(s.claims.chunks)) != (s.claims.n+claimChunkLen-1)/claimChunkLen {
		return fmt.Errorf("claim table holds %d chunks for %d claims", len(s.claims.chunks), s.claims.n)
	}
	reserved := make(map[*item]uint64)
	sold := make(map[*item]uint64)
	live := make(map[userItem]uint64)
	latest := make(map[string]uint64)
	var created int64
	for id := uint64(1); id <= s.claims.len(); id++ {
		c := s.claims.get(id)
		if err := s.checkClaim(id, c, created, latest); err != nil {
			return err
		}
		created = c.created
		latest[c.userID()] = id
		switch c.state {
		case ClaimReserved:
			reserved[c.item] += uint64(c.quantity)
		case ClaimSettled:
			sold[c.item] += uint64(c.quantity)
		}
		if c.live() {
			key := userItem{c.userID(), c.item}
			if live[key] += uint64(c.quantity); live[key] > uint64(c.item.limit()) {
				return fmt.Errorf("user %q holds %d of item %q, above its limit %d", key.user, live[key], c.item.id, c.item.limit())
			}
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
	return s.checkUsers(latest)
}

// checkClaim checks one claim record on its own and against the claims
// before it.
func (s *state) checkClaim(id uint64, c *claimRecord, prevCreated int64, latest map[string]uint64) error {
	switch {
	case c.item == nil || s.campaigns[c.item.campaign.id] != c.item.campaign || c.item.campaign.items[c.item.id] != c.item:
		return fmt.Errorf("claim %d: its item does not exist", id)
	case c.state != ClaimReserved && c.state != ClaimSettled && c.state != ClaimReleased:
		return fmt.Errorf("claim %d: state %d", id, c.state)
	case c.quantity == 0 || int(c.requestLen) > len(c.keys):
		return fmt.Errorf("claim %d: malformed record", id)
	case c.created < prevCreated || c.created > s.clock:
		return fmt.Errorf("claim %d: created at %d, out of order", id, c.created)
	case c.prevByUser != latest[c.userID()]:
		return fmt.Errorf("claim %d: user chain points at %d, not the user's previous claim %d", id, c.prevByUser, latest[c.userID()])
	}
	return nil
}

func (s *state) checkUsers(latest map[string]uint64) error {
	if s.users.len() != len(latest) {
		return fmt.Errorf("user index holds %d users, claims name %d", s.users.len(), len(latest))
	}
	for user, id := range latest {
		if got, _, _ := findRef(s.users, user); got != id {
			return fmt.Errorf("user index: %q → claim %d, want %d", user, got, id)
		}
	}
	return nil
}

func (s *state) checkIdempotency() error {
	st := s.idempotency
	if st.index.len() != st.order.len() {
		return fmt.Errorf("idempotency index holds %d records, queue %d", st.index.len(), st.order.len())
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
		if got, _, ok := findRef(st.index, st.requestIDOf(ref)); err == nil && (!ok || got != ref) {
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
		if c := s.claims.get(id); c.state == ClaimReserved && c.deadline() != 0 {
			want[c.item.campaign]++
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
		case rec == nil || rec.item.campaign != c || id <= last:
			err = fmt.Errorf("claim %d is out of place", id)
		case last == 0 && rec.state != ClaimReserved:
			err = fmt.Errorf("front claim %d is not reserved", id)
		case last != 0 && rec.deadline() < s.claims.get(last).deadline():
			err = fmt.Errorf("claim %d is out of deadline order", id)
		case rec.state == ClaimReserved:
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
