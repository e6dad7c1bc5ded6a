package frontdoor

import (
	"time"

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
	quantity uint32 // granted through this door, live as far as it knows
	reached  bool   // the store said LIMIT_REACHED
	until    int64  // Unix nanoseconds after which the hint is ignored
	grants   [grantsKept]*pb.Claim
}

// limitHints remembers users known to have reached their limit on an item,
// in bounded memory. Hints, not truth: the store decides every claim that
// gets past them.
type limitHints struct {
	users *boundedMap[userItemKey, limitHint]
}

func newLimitHints(maxEntries int) *limitHints {
	return &limitHints{users: newBoundedMap[userItemKey, limitHint](maxEntries)}
}

// check says whether a claim can be answered without the store: with the
// claim granted earlier for the same request ID (a retry), or with
// LIMIT_REACHED. limit is the item's per-user limit, 0 if unknown.
func (h *limitHints) check(k userItemKey, requestID string, quantity, limit uint32, now time.Time) (replay *pb.Claim, reached bool) {
	h.users.update(k, false, func(v *limitHint) {
		if now.UnixNano() >= v.until {
			return
		}
		for _, g := range v.grants {
			if g != nil && g.GetRequestId() == requestID {
				replay = g
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
	if d := c.GetDeadline(); d != nil {
		until = min(until, d.AsTime().UnixNano())
	}
	h.users.update(k, true, func(v *limitHint) {
		if now.UnixNano() >= v.until {
			*v = limitHint{}
		}
		v.quantity += c.GetQuantity()
		v.until = max(v.until, until)
		copy(v.grants[1:], v.grants[:grantsKept-1])
		v.grants[0] = c
	})
}

// learnReached records that the store refused a claim as LIMIT_REACHED.
func (h *limitHints) learnReached(k userItemKey, now time.Time) {
	h.users.update(k, true, func(v *limitHint) {
		v.reached = true
		v.until = now.Add(limitHintTTL).UnixNano()
	})
}
