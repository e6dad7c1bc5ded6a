package fsm

import (
	"slices"
	"strings"
	"time"
)

// state is everything the log builds. Restore builds a new one and swaps it
// in whole, so no index can outlive the records it points into.
type state struct {
	campaigns     map[string]*campaign
	campaignOrder []*campaign // sorted by ID: reads and Expire never depend on map order
	claims        claimTable
	users         *refIndex // user ID → the user's latest claim ID; earlier ones chain through prevByUser
	idempotency   *idempotencyStore
	nodes         map[string]Node
	feeds         map[string]*settlementFeed // settlement worker group → its place in the feed
	frontDoor     FrontDoorConfig
	clock         int64  // time of the last command, Unix nanoseconds; never runs backwards
	appliedIndex  uint64 // Raft index of the last applied entry
	changed       bool   // something a Changed watcher sees changed since the last notification
}

func newState(cfg Config) *state {
	s := &state{campaigns: make(map[string]*campaign), nodes: make(map[string]Node), feeds: make(map[string]*settlementFeed)}
	s.users = newRefIndex(func(id uint64) string { return s.claims.userID(s.claims.get(id)) })
	s.idempotency = newIdempotencyStore(&s.claims, cfg)
	return s
}

// campaign is a campaign with its items and its reservations in deadline
// order.
type campaign struct {
	id             string
	name           string
	kind           CampaignKind
	state          CampaignState
	start, end     int64 // Unix nanoseconds; end 0: no end
	perUserLimit   uint32
	waveCount      uint32
	waveInterval   int64
	reservationTTL int64 // 0: reservations never expire

	items     map[string]*item
	itemOrder []*item // sorted by ID
	// expiring holds the IDs of reservations with a deadline, oldest first.
	// The TTL is fixed per campaign and command time never runs backwards,
	// so creation order is deadline order and a queue is enough. Settled and
	// released claims stay queued until they reach the front.
	expiring fifo[uint64]

	cards *cardCollect // a card-collect campaign's, once defined; nil otherwise
}

// openAt reports whether claims are accepted at time t (before waves).
func (c *campaign) openAt(t int64) bool {
	return c.state == StateOpen && t >= c.start && (c.end == 0 || t < c.end)
}

// waveOpensAt is when entry wave w may start claiming.
func (c *campaign) waveOpensAt(w uint32) int64 {
	return addSaturating(c.start, mulSaturating(w, c.waveInterval))
}

func (c *campaign) view() Campaign {
	return Campaign{
		ID: c.id, Kind: c.kind, Name: c.name, Start: timeFromNanos(c.start), End: timeFromNanos(c.end),
		PerUserLimit: c.perUserLimit, WaveCount: c.waveCount, WaveInterval: time.Duration(c.waveInterval),
		ReservationTTL: time.Duration(c.reservationTTL), State: c.state,
	}
}

func (c *campaign) addItem(it *item) {
	c.items[it.id] = it
	i, _ := slices.BinarySearchFunc(c.itemOrder, it.id, func(x *item, id string) int { return strings.Compare(x.id, id) })
	c.itemOrder = slices.Insert(c.itemOrder, i, it)
}

// item is one item's stock. Claims name it by number, so its identity costs
// four bytes per claim rather than two strings.
type item struct {
	campaign     *campaign
	id           string
	number       uint32 // in claimTable.items, which claims point into
	perUserLimit uint32 // the item's own; 0: the campaign's
	total        uint64
	available    uint64
	reserved     uint64
	sold         uint64
}

// limit is the effective per-user limit: the item's, else the campaign's,
// else defaultPerUserLimit.
func (it *item) limit() uint32 {
	switch {
	case it.perUserLimit != 0:
		return it.perUserLimit
	case it.campaign.perUserLimit != 0:
		return it.campaign.perUserLimit
	}
	return defaultPerUserLimit
}

func (it *item) view() Item {
	return Item{
		CampaignID: it.campaign.id, ID: it.id, Total: it.total, Available: it.available,
		Reserved: it.reserved, Sold: it.sold, PerUserLimit: it.limit(),
	}
}

func (s *state) addCampaign(c *campaign) {
	s.campaigns[c.id] = c
	i, _ := slices.BinarySearchFunc(s.campaignOrder, c.id, func(x *campaign, id string) int { return strings.Compare(x.id, id) })
	s.campaignOrder = slices.Insert(s.campaignOrder, i, c)
}

func (s *state) item(campaignID, itemID string) *item {
	c := s.campaigns[campaignID]
	if c == nil {
		return nil
	}
	return c.items[itemID]
}

// claimView returns the public view of claim id, which must exist.
func (s *state) claimView(id uint64) Claim {
	t := &s.claims
	c := t.get(id)
	it := t.item(c)
	return Claim{
		ID: id, CampaignID: it.campaign.id, ItemID: it.id, UserID: t.userID(c), Quantity: c.quantity,
		State: c.state, Created: timeFromNanos(c.created), Deadline: timeFromNanos(t.deadline(c)), RequestID: t.requestID(c),
	}
}

// liveQuantity sums the user's reserved and settled quantity on it, walking
// the user's claims from latest to first. The walk is as long as the user's
// claim history, which per-user limits and front-door rate limits keep short;
// it is what saves a per-user, per-item map entry on every claim.
func (s *state) liveQuantity(latest uint64, it *item) uint64 {
	var sum uint64
	for id := latest; id != 0; {
		c := s.claims.get(id)
		if c.item == it.number && c.live() {
			sum += uint64(c.quantity)
		}
		id = c.prevByUser
	}
	return sum
}

// userClaims returns the IDs of a user's claims, latest first.
func (s *state) userClaims(userID string) []uint64 {
	var ids []uint64
	latest, _, _ := findRef(s.users, userID)
	for id := latest; id != 0; id = s.claims.get(id).prevByUser {
		ids = append(ids, id)
	}
	return ids
}

// Counter arithmetic that would leave the range is a broken invariant, not a
// refusal: the node stops rather than hold a wrapped-around stock.
func subCounter(a, b uint64) uint64 {
	if b > a {
		panic("fsm: invariant broken: stock counter would go below zero")
	}
	return a - b
}

func addCounter(a, b uint64) uint64 {
	if a+b < a {
		panic("fsm: invariant broken: stock counter overflows")
	}
	return a + b
}
