package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// known reports whether the FSM holds a record for requestID.
func (h *harness) known(requestID string) bool {
	h.f.mu.RLock()
	defer h.f.mu.RUnlock()
	_, _, ok := findRef(h.f.s.idempotency.index, requestID)
	return ok
}

func TestClaimRetryReturnsTheFirstResult(t *testing.T) {
	h := newHarness(t)
	h.openSale(5)
	first := h.mustClaim(claimReq("u", 1))
	before := h.digest()
	again := h.claim(claimReq("u", 1))
	if again.Reason != ReasonOK || again.Claim != first {
		t.Fatalf("retry: %v %+v, want OK and %+v", again.Reason, again.Claim, first)
	}
	if h.digest() != before {
		t.Fatal("retry changed the state")
	}
	if got := h.item("c", "i"); got.Reserved != 1 || h.f.Stats().Claims != 1 {
		t.Fatalf("claimed more than once: %+v", got)
	}
	h.mustOK(settle(first.ID))
	if again := h.claim(claimReq("u", 1)); again.Reason != ReasonOK || again.Claim.State != ClaimSettled {
		t.Fatalf("retry after settling: %v %+v, want OK with the settled claim", again.Reason, again.Claim)
	}
	// Twice in one batch: the second is a retry of the first.
	outs := h.claims(claimReq("v", 1), claimReq("v", 1))
	if outs[0].Reason != ReasonOK || outs[1].Reason != ReasonOK || outs[0].Claim.ID != outs[1].Claim.ID {
		t.Fatalf("same request twice in a batch: %+v", outs)
	}
}

func TestRefusalRetryReturnsTheFirstResult(t *testing.T) {
	h := newHarness(t)
	h.openSale(0)
	if out := h.claim(claimReq("u", 1)); out.Reason != ReasonSoldOut {
		t.Fatalf("first: %v", out.Reason)
	}
	h.mustOK(adjustStock("c", "i", 5))
	before := h.digest()
	if out := h.claim(claimReq("u", 1)); out.Reason != ReasonSoldOut || out.Message != msgRepeated {
		t.Fatalf("retry after restock: %v %q, want the first result SOLD_OUT", out.Reason, out.Message)
	}
	if h.digest() != before {
		t.Fatal("retry changed the state")
	}
	h.mustClaim(claimReq("u", 2)) // a new request ID is a new attempt
}

func TestRequestIDReused(t *testing.T) {
	h := newHarness(t)
	h.openSale(5, func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 2 })
	h.mustOK(addItem("c", "j", 5, 0))
	h.mustClaim(claimReq("u", 1))
	h.mustOK(withRequestID("settle-1", settle(1)))
	changed := []*fsmpb.ClaimRequest{
		{RequestId: "req-u-1", CampaignId: "c", ItemId: "i", UserId: "u", Quantity: 2},
		{RequestId: "req-u-1", CampaignId: "c", ItemId: "j", UserId: "u", Quantity: 1},
		{RequestId: "req-u-1", CampaignId: "c", ItemId: "i", UserId: "w", Quantity: 1},
		{RequestId: "settle-1", CampaignId: "c", ItemId: "i", UserId: "u", Quantity: 1},
	}
	before := h.digest()
	for _, req := range changed {
		if out := h.claim(req); out.Reason != ReasonRequestIDReused {
			t.Errorf("%v: %v, want REQUEST_ID_REUSED", req, out.Reason)
		}
	}
	for _, cmd := range []*fsmpb.Command{
		withRequestID("settle-1", release(1)),
		withRequestID("settle-1", settle(2)),
		withRequestID("req-u-1", settle(1)),
	} {
		if out := h.one(cmd); out.Reason != ReasonRequestIDReused {
			t.Errorf("%v with a used request ID: %v, want REQUEST_ID_REUSED", cmd.GetType(), out.Reason)
		}
	}
	if h.digest() != before {
		t.Fatal("a reused request ID changed the state")
	}
}

func TestOperationRetry(t *testing.T) {
	h := newHarness(t)
	create := withRequestID("create", createCampaign(&fsmpb.CreateCampaign{
		CampaignId: "c", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0,
	}))
	h.mustOK(create)
	h.mustOK(openCampaign("c"))
	h.mustOK(addItem("c", "i", 5, 0))
	tests := []struct {
		name  string
		cmd   *fsmpb.Command
		want  Reason
		check func(t *testing.T, res *Result)
	}{
		{"create", create, ReasonOK, func(t *testing.T, res *Result) {
			if res.Campaign == nil || res.Campaign.State != StateOpen {
				t.Errorf("replayed create: campaign %+v, want the current (open) view", res.Campaign)
			}
		}},
		{"add item refused", withRequestID("add", addItem("x", "i", 1, 0)), ReasonCampaignNotFound, nil},
		{"adjust", withRequestID("adjust", adjustStock("c", "i", 1)), ReasonOK, func(t *testing.T, res *Result) {
			if res.Item == nil || res.Item.Total != 6 {
				t.Errorf("replayed adjust: item %+v, want total 6 (added once)", res.Item)
			}
		}},
		{"settle", withRequestID("settle", settle(1)), ReasonOK, func(t *testing.T, res *Result) {
			if res.Outcomes[0].Claim.ID != 1 || res.Outcomes[0].Claim.State != ClaimSettled {
				t.Errorf("replayed settle: claim %+v", res.Outcomes[0].Claim)
			}
		}},
		{"config", withRequestID("config", setFrontDoor(&fsmpb.FrontDoorConfig{GlobalRate: 5})), ReasonOK, func(t *testing.T, res *Result) {
			if res.Config == nil || res.Config.Version != 1 {
				t.Errorf("replayed config: %+v, want version 1 (set once)", res.Config)
			}
		}},
	}
	h.mustClaim(claimReq("u", 1))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name != "create" {
				if out := h.one(tt.cmd); out.Reason != tt.want {
					t.Fatalf("first: %v, want %v", out.Reason, tt.want)
				}
			}
			before := h.digest()
			res := h.apply(tt.cmd)
			if res.Outcomes[0].Reason != tt.want {
				t.Fatalf("retry: %v, want %v", res.Outcomes[0].Reason, tt.want)
			}
			if h.digest() != before {
				t.Fatal("retry changed the state")
			}
			if tt.check != nil {
				tt.check(t, res)
			}
		})
	}
}

func TestOperationWithBadRequestID(t *testing.T) {
	h := newHarness(t)
	checkRefusal(t, h, withRequestID("bad\x01", registerNode(&fsmpb.RegisterNode{NodeId: "n"})), ReasonInvalidArgument)
}

func TestIdempotencyEvictionByCount(t *testing.T) {
	h := newHarnessWith(t, Config{IdempotencyMaxRecords: 3})
	h.openSale(1)
	// Granted claims and refusals (sold out after the first) interleave in
	// the one queue.
	for _, user := range []string{"a", "b", "c", "d", "e"} {
		h.claim(claimReq(user, 1))
	}
	h.mustOK(withRequestID("op", settle(1)))
	for _, tt := range []struct {
		id   string
		want bool
	}{{"req-a-1", false}, {"req-b-1", false}, {"req-c-1", false}, {"req-d-1", true}, {"req-e-1", true}, {"op", true}} {
		if got := h.known(tt.id); got != tt.want {
			t.Errorf("record %s held: %v, want %v", tt.id, got, tt.want)
		}
	}
	if got := h.f.Stats().IdempotencyRecords; got != 3 {
		t.Errorf("%d records, want 3", got)
	}
	// An evicted request ID is a new request: user a's retry is checked again.
	if out := h.claim(claimReq("a", 1)); out.Reason != ReasonLimitReached {
		t.Errorf("retry after eviction: %v, want LIMIT_REACHED", out.Reason)
	}
}

func TestIdempotencyEvictionByTime(t *testing.T) {
	retention := time.Minute
	h := newHarnessWith(t, Config{IdempotencyRetention: retention})
	h.openSale(10, func(b *fsmpb.CreateCampaign) { b.ReservationTtlNanos = int64(time.Hour) })
	h.mustClaim(claimReq("a", 1))
	h.now += int64(30 * time.Second)
	h.claim(&fsmpb.ClaimRequest{RequestId: "refused", CampaignId: "x", ItemId: "i", UserId: "b", Quantity: 1})
	h.mustClaim(claimReq("b", 1))
	h.now = t0 + int64(retention) // the first records are exactly as old as the window
	h.mustOK(expire())
	if !h.known("req-a-1") {
		t.Fatal("evicted a record at the edge of the window")
	}
	h.now++
	h.mustOK(expire())
	if h.known("req-a-1") || !h.known("refused") || !h.known("req-b-1") {
		t.Fatal("after the first record's window: want only it evicted")
	}
	h.now += int64(30 * time.Second)
	h.mustOK(expire())
	if h.known("refused") || h.known("req-b-1") || h.f.Stats().IdempotencyRecords != 0 {
		t.Fatalf("after every window: %d records left", h.f.Stats().IdempotencyRecords)
	}
	if h.f.Stats().Claims != 2 {
		t.Fatal("eviction removed claims")
	}
}

// TestIdempotencyWithCollidingHashes runs the index with a hash that puts
// every key in the same place, so every lookup goes through the overflow
// map: results must not depend on the hash.
func TestIdempotencyWithCollidingHashes(t *testing.T) {
	h := newHarnessWith(t, Config{IdempotencyMaxRecords: 4})
	collide := func(string) uint64 { return 42 }
	h.f.s.idempotency.index.hash = collide
	h.f.s.users.hash = collide
	h.openSale(10, func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 2 })
	for _, user := range []string{"a", "b", "a", "c", "a"} {
		h.claim(claimReq(user, h.f.Stats().Claims))
	}
	if got := h.f.ClaimsByUser("a", ""); len(got) != 2 {
		t.Fatalf("user a holds %d claims, want 2 (its limit)", len(got))
	}
	if out := h.claim(claimReq("c", 3)); out.Reason != ReasonOK || out.Claim.UserID != "c" {
		t.Fatalf("retry of c's claim: %v %+v", out.Reason, out.Claim)
	}
	if err := h.f.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestSideRecordsAcrossTheIndexWrap starts the side queue just below the
// position where the index's names for side records (positions modulo
// indexSide) come round to 0, and evicts records across it: each live one
// must still be found, with its own result, and each evicted one not.
func TestSideRecordsAcrossTheIndexWrap(t *testing.T) {
	h := newHarnessWith(t, Config{IdempotencyMaxRecords: 3})
	h.openSale(1)
	h.mustClaim(claimReq("a", 1))
	st := h.f.s.idempotency
	if st.side.len() != 0 {
		t.Fatalf("%d side records before the test", st.side.len())
	}
	st.side.popped = indexSide - 2
	var ids []string
	for n := range 8 { // sold out: each refusal is a side record
		ids = append(ids, fmt.Sprint("req-u", n, "-1"))
		if out := h.claim(claimReq(fmt.Sprint("u", n), 1)); out.Reason != ReasonSoldOut {
			t.Fatalf("claim %d: %v, want SOLD_OUT", n, out.Reason)
		}
		for i, id := range ids {
			if want := i+3 > n; h.known(id) != want {
				t.Fatalf("after %d refusals: %s held %v, want %v", n+1, id, !want, want)
			}
		}
		if out := h.claim(claimReq(fmt.Sprint("u", n), 1)); out.Reason != ReasonSoldOut || out.Message != msgRepeated {
			t.Fatalf("retry of claim %d: %v %q, want the first SOLD_OUT repeated", n, out.Reason, out.Message)
		}
	}
	if last := st.side.popped + uint64(st.side.len()); last < indexSide+2 {
		t.Fatalf("the side queue ends at %d, short of the wrap at %d", last, indexSide)
	}
}
