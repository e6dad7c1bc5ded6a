package fsm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// TestCheckInvariantsFindsEachBreak breaks the state the way a bug would,
// one invariant at a time, and expects CheckInvariants to say which.
func TestCheckInvariantsFindsEachBreak(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(s *state)
		want    string
	}{
		{"stock does not add up", func(s *state) { s.item("c", "i").sold++ }, "!= total"},
		{"claims disagree with the counters", func(s *state) {
			it := s.item("c", "i")
			it.reserved--
			it.available++
		}, "claims hold"},
		{"user above the limit", func(s *state) { s.item("c", "i").perUserLimit = 1 }, "above its limit"},
		{"claim in no state", func(s *state) { s.claims.mutable(1).state = 9 }, "state 9"},
		{"claim of a missing item", func(s *state) { s.claims.mutable(1).item = 42 }, "item does not exist"},
		{"claims out of time order", func(s *state) { s.claims.mutable(1).created = s.clock + 1 }, "out of order"},
		{"user chain broken", func(s *state) { s.claims.mutable(2).prevByUser = 0 }, "chains reach"},
		{"user chain crosses users", func(s *state) { s.claims.mutable(3).prevByUser = 1 }, "another user"},
		{"user index lost an entry", func(s *state) { dropEntry(s.users, "b", 3) }, "chains reach"},
		{"idempotency index lost an entry", func(s *state) { dropEntry(s.idempotency.index, "req-a-1", 1) }, "idempotency index holds"},
		{"idempotency index forgot a live record", func(s *state) { s.idempotency.index.forget() }, "idempotency index holds"},
		{"idempotency index holds an extra record", func(s *state) {
			st := s.idempotency
			st.index.insert(hashKey(st.index, "req-a-1"), 2)
		}, "idempotency index"},
		{"expiry queue lost a reservation", func(s *state) { s.campaigns["c"].expiring.pop() }, "expiry queue"},
		{"item numbering", func(s *state) { s.claims.items = append(s.claims.items, &item{}) }, "items numbered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.openSale(10, func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 2; b.ReservationTtlNanos = int64(time.Minute) })
			h.mustClaim(claimReq("a", 1))
			h.mustClaim(claimReq("a", 2))
			h.mustClaim(claimReq("b", 1))
			if err := h.f.CheckInvariants(); err != nil {
				t.Fatalf("before breaking: %v", err)
			}
			tt.breakIt(h.f.s)
			err := h.f.CheckInvariants()
			if !errors.Is(err, ErrInvariant) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckInvariants: %v, want ErrInvariant about %q", err, tt.want)
			}
		})
	}
}
