package frontdoor

import (
	"hash/maphash"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// limitHintTTL bounds how long the front door believes a user has reached
// an item's limit: a reservation may expire or be released, and the user
// may then claim again. Past it, one claim goes to the store and the hint
// is learnt anew.
const limitHintTTL = 10 * time.Second

// grantsKept is how many granted claims per user and item a hint keeps, to
// answer a retry of one of them without the store.
const grantsKept = 4

// userItemKey names one user's claims on one item.
type userItemKey struct{ user, campaign, item string }

// limitHint is what the front door learnt of a user's claims on an item
// from the store's answers.
type limitHint struct {
	key      userItemKey // the map holds hints by its hash: a hint for another key is absent
	quantity uint32      // granted through this door, live as far as it knows
	reached  bool        // the store said LIMIT_REACHED
	until    int64       // Unix nanoseconds after which the hint is ignored
	grants   [grantsKept]grantRecord
}

// grantRecord is what a hint keeps of a granted claim to answer a retry
// with it: its own fields and no pointers but the request ID, so that a
// quarter of a million hints cost the garbage collector little.
type grantRecord struct {
	id                uint64
	requestID         string
	quantity          uint32
	state             pb.ClaimState
	created, deadline int64 // Unix nanoseconds, 0 if unset
}

// limitHints remembers users known to have reached their limit on an item,
// in bounded memory. Hints, not truth: the store decides every claim that
// gets past them. They are held by a 64-bit hash of their key, which costs
// one hash per look-up where a map keyed by the three strings costs two
// and compares them; two keys with one hash share a slot, and the later
// one's hint replaces the earlier's (a hint forgotten, never misapplied).
type limitHints struct {
	seed  maphash.Seed
	users *boundedMap[uint64, limitHint]
}

func newLimitHints(maxEntries int) *limitHints {
	return &limitHints{seed: maphash.MakeSeed(), users: newBoundedMap[uint64, limitHint](maxEntries)}
}

func (h *limitHints) hash(k userItemKey) uint64 { return maphash.Comparable(h.seed, k) }

// check says whether a claim can be answered without the store: with the
// claim granted earlier for the same request ID (a retry), or with
// LIMIT_REACHED. limit is the item's per-user limit, 0 if unknown.
func (h *limitHints) check(k userItemKey, requestID string, quantity, limit uint32, now time.Time) (replay *pb.Claim, reached bool) {
	h.users.update(h.hash(k), false, func(v *limitHint) {
		if v.key != k || now.UnixNano() >= v.until {
			return
		}
		for _, g := range v.grants {
			if g.requestID != "" && g.requestID == requestID {
				replay = g.claim(k)
				return
			}
		}
		reached = v.reached || limit != 0 && v.quantity+quantity > limit
	})
	return replay, reached
}

// learnGrant records a claim the store granted.
func (h *limitHints) learnGrant(k userItemKey, c *pb.Claim, now time.Time) {
	until := now.Add(limitHintTTL).UnixNano()
	g := grantRecord{
		id: c.GetId(), requestID: c.GetRequestId(), quantity: c.GetQuantity(), state: c.GetState(),
		created: unixNanos(c.GetCreated()), deadline: unixNanos(c.GetDeadline()),
	}
	if g.deadline != 0 {
		until = min(until, g.deadline)
	}
	h.users.update(h.hash(k), true, func(v *limitHint) {
		if v.key != k || now.UnixNano() >= v.until {
			*v = limitHint{key: k}
		}
		v.quantity += g.quantity
		v.until = max(v.until, until)
		copy(v.grants[1:], v.grants[:grantsKept-1])
		v.grants[0] = g
	})
}

// learnReached records that the store refused a claim as LIMIT_REACHED.
func (h *limitHints) learnReached(k userItemKey, now time.Time) {
	h.users.update(h.hash(k), true, func(v *limitHint) {
		if v.key != k {
			*v = limitHint{key: k}
		}
		v.reached = true
		v.until = now.Add(limitHintTTL).UnixNano()
	})
}

// claim is the claim record a replay answers with.
func (g *grantRecord) claim(k userItemKey) *pb.Claim {
	return &pb.Claim{
		Id: g.id, CampaignId: k.campaign, ItemId: k.item, UserId: k.user, Quantity: g.quantity, State: g.state,
		Created: nanoToPB(g.created), Deadline: nanoToPB(g.deadline), RequestId: g.requestID,
	}
}

func unixNanos(t *timestamppb.Timestamp) int64 {
	if t == nil {
		return 0
	}
	return t.AsTime().UnixNano()
}

// noDrawsHintTTL bounds how long the front door believes a user has no
// draw chance left in a card campaign. Grants go to the store, not through
// the door, so a user granted new chances may be refused here for up to
// this long; then one draw goes to the store and the hint is learnt anew.
const noDrawsHintTTL = 2 * time.Second

// userCampaignKey names one user's draws in one card campaign.
type userCampaignKey struct{ user, campaign string }

// drawHint is what the door learnt of a user's draw chances.
type drawHint struct {
	key   userCampaignKey // held by its hash: a hint for another key is absent
	until int64           // Unix nanoseconds until which the user has no draw left
	// drawn are the request IDs of the user's last draws the store
	// granted: a repeat of one is let through to the store, which
	// answers it with its card.
	drawn [grantsKept]string
}

// drawHints remembers users the store said have no draw left, in bounded
// memory, keyed by a 64-bit hash like limitHints. Hints, not truth: a draw
// that gets past them is decided by the store, and a hint only refuses
// what the store refused a moment ago.
type drawHints struct {
	seed  maphash.Seed
	users *boundedMap[uint64, drawHint]
}

func newDrawHints(maxEntries int) *drawHints {
	return &drawHints{seed: maphash.MakeSeed(), users: newBoundedMap[uint64, drawHint](maxEntries)}
}

// noDrawsLeft says whether a draw with requestID can be refused
// NO_DRAWS_LEFT without the store: k has no draw left now, and requestID
// is none of the draws the door saw granted to k.
func (h *drawHints) noDrawsLeft(k userCampaignKey, requestID string, now time.Time) (none bool) {
	h.users.update(maphash.Comparable(h.seed, k), false, func(v *drawHint) {
		if v.key != k || now.UnixNano() >= v.until {
			return
		}
		for _, id := range v.drawn {
			if id != "" && id == requestID {
				return
			}
		}
		none = true
	})
	return none
}

// learnDraw records a draw the store granted to k with requestID, and
// whether it left k none.
func (h *drawHints) learnDraw(k userCampaignKey, requestID string, lastDraw bool, now time.Time) {
	h.users.update(maphash.Comparable(h.seed, k), true, func(v *drawHint) {
		if v.key != k {
			*v = drawHint{key: k}
		}
		v.until = 0 // a draw that left some proves there are some
		if lastDraw {
			v.until = now.Add(noDrawsHintTTL).UnixNano()
		}
		copy(v.drawn[1:], v.drawn[:grantsKept-1])
		v.drawn[0] = requestID
	})
}

// learnNoDraws records that the store refused a draw of k NO_DRAWS_LEFT.
func (h *drawHints) learnNoDraws(k userCampaignKey, now time.Time) {
	h.users.update(maphash.Comparable(h.seed, k), true, func(v *drawHint) {
		if v.key != k {
			*v = drawHint{key: k}
		}
		v.until = now.Add(noDrawsHintTTL).UnixNano()
	})
}
