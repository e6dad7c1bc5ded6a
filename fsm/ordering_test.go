package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
	"google.golang.org/protobuf/encoding/protodelim"
)

// orderingSale opens sale "c" with a reservation TTL and stock 10, and
// claims 1 to n at t0, one per user u0, u1, ...
func orderingSale(t *testing.T, ttl time.Duration, n int) *harness {
	t.Helper()
	h := newHarness(t)
	h.openSale(10, func(b *fsmpb.CreateCampaign) { b.ReservationTtlNanos = int64(ttl) })
	for i := range n {
		h.mustClaim(claimReq("u"+string(rune('0'+i)), 1))
	}
	return h
}

func (h *harness) state(id uint64) ClaimState {
	h.t.Helper()
	c, ok := h.f.Claim(id)
	if !ok {
		h.t.Fatalf("claim %d not found", id)
	}
	return c.State
}

func (h *harness) wantItem(available, reserved, sold uint64) {
	h.t.Helper()
	if it := h.item("c", "i"); it.Available != available || it.Reserved != reserved || it.Sold != sold {
		h.t.Fatalf("item %+v, want %d available, %d reserved, %d sold", it, available, reserved, sold)
	}
}

// TestExpireKeepsOrderingClaims: past the deadline an unmarked reservation
// is released, a marked one is kept, holding its stock, to be compensated.
func TestExpireKeepsOrderingClaims(t *testing.T) {
	ttl := time.Minute
	h := orderingSale(t, ttl, 3)
	if out := h.one(markOrdering(2)); out.Reason != ReasonOK || out.Claim.State != ClaimOrdering {
		t.Fatalf("mark 2: %+v", out)
	}
	if out := h.one(markOrdering(2)); out.Reason != ReasonOK || out.Claim.State != ClaimOrdering {
		t.Fatalf("mark 2 again: %+v, want OK and no change", out)
	}
	h.mustOK(markOrdering(3))
	h.wantItem(7, 3, 0)

	h.now = t0 + int64(ttl) // deadlines are t0+ttl: not before the command time
	if res := h.mustOK(expire()); res.Expired != 0 || res.ToCompensate != 0 {
		t.Fatalf("at the deadline: %+v", res)
	}
	h.now++
	res := h.mustOK(expire())
	if res.Expired != 1 || res.ToCompensate != 2 {
		t.Fatalf("past the deadline: released %d, to compensate %d; want 1 and 2", res.Expired, res.ToCompensate)
	}
	for id, want := range map[uint64]ClaimState{1: ClaimReleased, 2: ClaimToCompensate, 3: ClaimToCompensate} {
		if got := h.state(id); got != want {
			t.Errorf("claim %d is %v, want %v", id, got, want)
		}
	}
	h.wantItem(8, 2, 0) // the stock of claims to compensate is not back on sale
	if got := h.f.ReservedClaims(10); len(got) != 0 {
		t.Errorf("reservations waiting for a deadline: %v, want none", got)
	}
	if res := h.mustOK(expire()); res.Expired != 0 || res.ToCompensate != 0 {
		t.Fatalf("second expire: %+v, want nothing", res)
	}
	// A claim to compensate still counts against its user's limit (1).
	if out := h.claim(claimReq("u1", 2)); out.Reason != ReasonLimitReached {
		t.Errorf("u1 claims again while a claim is to compensate: %v, want LIMIT_REACHED", out.Reason)
	}
	// The order went through: settling honours it, past the deadline.
	if out := h.one(settle(2)); out.Reason != ReasonOK || out.Claim.State != ClaimSettled {
		t.Fatalf("settle of a claim to compensate: %+v", out)
	}
	h.wantItem(8, 1, 1)
}

// TestSettleOrderingPastDeadline: a marked claim settles after its deadline
// both before and after Expire reached it.
func TestSettleOrderingPastDeadline(t *testing.T) {
	h := orderingSale(t, time.Minute, 1)
	h.mustOK(markOrdering(1))
	h.now += int64(2 * time.Minute) // past the deadline, Expire not yet run
	if out := h.one(settle(1)); out.Reason != ReasonOK || out.Claim.State != ClaimSettled {
		t.Fatalf("settle: %+v", out)
	}
	if res := h.mustOK(expire()); res.Expired != 0 || res.ToCompensate != 0 {
		t.Fatalf("expire after settle: %+v", res)
	}
	h.wantItem(9, 0, 1)
}

// TestCompensation: a claim to compensate is marked as cancelling (Settle
// refused from then on), then released.
func TestCompensation(t *testing.T) {
	h := orderingSale(t, time.Minute, 2)
	h.mustOK(markOrdering(1))
	h.mustOK(markOrdering(2))
	h.now += int64(2 * time.Minute)
	h.mustOK(expire())

	if out := h.one(markCancelling(1)); out.Reason != ReasonOK || out.Claim.State != ClaimCancelling {
		t.Fatalf("mark cancelling: %+v", out)
	}
	if out := h.one(markCancelling(1)); out.Reason != ReasonOK || out.Claim.State != ClaimCancelling {
		t.Fatalf("mark cancelling again: %+v, want OK and no change", out)
	}
	before := h.businessDigest()
	if out := h.one(settle(1)); out.Reason != ReasonCompensating || out.Claim.State != ClaimCancelling || out.Message == "" {
		t.Fatalf("settle of a cancelling claim: %+v, want COMPENSATING", out)
	}
	if out := h.one(markOrdering(1)); out.Reason != ReasonCompensating {
		t.Fatalf("mark ordering of a cancelling claim: %v, want COMPENSATING", out.Reason)
	}
	if h.businessDigest() != before {
		t.Fatal("a refused settle changed the state")
	}
	h.wantItem(8, 2, 0)
	if out := h.one(release(1)); out.Reason != ReasonOK || out.Claim.State != ClaimReleased {
		t.Fatalf("release after cancelling: %+v", out)
	}
	h.wantItem(9, 1, 0) // back on sale
	if out := h.one(settle(1)); out.Reason != ReasonAlreadyReleased {
		t.Errorf("settle after the release: %v, want ALREADY_RELEASED", out.Reason)
	}
	if out := h.one(markCancelling(1)); out.Reason != ReasonAlreadyReleased {
		t.Errorf("mark cancelling after the release: %v, want ALREADY_RELEASED", out.Reason)
	}
	// The user may claim again now.
	h.mustClaim(claimReq("u0", 2))
	// Claim 2 was settled first: a cancel must not start.
	h.mustOK(settle(2))
	if out := h.one(markCancelling(2)); out.Reason != ReasonAlreadySettled {
		t.Errorf("mark cancelling of a settled claim: %v, want ALREADY_SETTLED", out.Reason)
	}
}

// TestMarkRefusals: every refusal of the two marks, none changing anything
// but its idempotency record.
func TestMarkRefusals(t *testing.T) {
	h := orderingSale(t, time.Minute, 5)
	h.mustOK(settle(1))
	h.mustOK(release(2))
	h.mustOK(markOrdering(3))
	h.mustOK(markOrdering(4))
	h.now += int64(2 * time.Minute)
	h.mustOK(expire()) // 3, 4 to compensate; 5 released
	h.mustOK(markCancelling(4))
	h.mustClaim(claimReq("u7", 1)) // 6: reserved
	h.mustClaim(claimReq("u8", 1)) // 7: ordering
	h.mustOK(markOrdering(7))
	for _, tc := range []struct {
		cmd  *fsmpb.Command
		want Reason
	}{
		{markOrdering(99), ReasonClaimNotFound},
		{markOrdering(1), ReasonAlreadySettled},
		{markOrdering(2), ReasonAlreadyReleased},
		{markOrdering(5), ReasonAlreadyReleased}, // expired unmarked
		{markOrdering(3), ReasonCompensating},
		{markOrdering(4), ReasonCompensating},
		{markCancelling(99), ReasonClaimNotFound},
		{markCancelling(1), ReasonAlreadySettled},
		{markCancelling(2), ReasonAlreadyReleased},
		{markCancelling(6), ReasonNotCompensating},
		{markCancelling(7), ReasonNotCompensating},
		{settle(4), ReasonCompensating},
		{release(1), ReasonAlreadySettled},
	} {
		before := h.businessDigest()
		out := h.one(tc.cmd)
		if out.Reason != tc.want || out.Message == "" {
			t.Errorf("%v: %v (%q), want %v", tc.cmd, out.Reason, out.Message, tc.want)
		}
		if h.businessDigest() != before {
			t.Errorf("%v: the refusal changed the state", tc.cmd)
		}
	}
}

// TestMarkRetries: the marks are idempotent by request ID: a retry answers
// the first result even after the claim moved on, and a request ID reused
// for another claim is refused.
func TestMarkRetries(t *testing.T) {
	h := orderingSale(t, time.Minute, 2)
	first := h.one(withRequestID("order-1", markOrdering(1)))
	if first.Reason != ReasonOK {
		t.Fatal(first)
	}
	h.now += int64(2 * time.Minute)
	h.mustOK(expire())
	h.mustOK(withRequestID("cancel-1", markCancelling(1)))
	// Without its request ID the mark would be refused now (COMPENSATING).
	if out := h.one(withRequestID("order-1", markOrdering(1))); out.Reason != ReasonOK || out.Claim.State != ClaimCancelling {
		t.Errorf("retry of the mark: %+v, want the first result (OK) with the current view", out)
	}
	if out := h.one(withRequestID("order-1", markOrdering(2))); out.Reason != ReasonRequestIDReused {
		t.Errorf("request ID reused for claim 2: %v", out.Reason)
	}
	if out := h.one(withRequestID("order-1", settle(1))); out.Reason != ReasonRequestIDReused {
		t.Errorf("request ID reused by a settle: %v", out.Reason)
	}
	h.mustOK(release(1))
	if out := h.one(withRequestID("cancel-1", markCancelling(1))); out.Reason != ReasonOK {
		t.Errorf("retry of the cancel mark after the release: %v, want OK", out.Reason)
	}
	if c, _ := h.f.Claim(2); c.State != ClaimReleased {
		t.Errorf("claim 2 is %v: the reused request ID must not have marked it", c.State)
	}
}

// TestFeedHandsOutClaimsToCompensate: the feed leases ordering, to
// compensate and cancelling claims as reserved ones, and its cursor passes
// them only once they are settled or released.
func TestFeedHandsOutClaimsToCompensate(t *testing.T) {
	h := orderingSale(t, time.Minute, 4)
	h.mustOK(markOrdering(1))
	h.mustOK(markOrdering(2))
	h.mustOK(markOrdering(3))
	h.now += int64(2 * time.Minute)
	h.mustOK(expire()) // 1-3 to compensate, 4 released
	h.mustOK(markCancelling(2))
	h.mustClaim(claimReq("u9", 1)) // 5
	h.mustOK(markOrdering(5))
	res := h.mustOK(leaseClaims("g", "w1", 10, time.Minute))
	if leasedIDs(res) != "[1 2 3 5]" || res.Cursor != 1 {
		t.Fatalf("leased %s, cursor %d; want [1 2 3 5] from 1", leasedIDs(res), res.Cursor)
	}
	want := []ClaimState{ClaimToCompensate, ClaimCancelling, ClaimToCompensate, ClaimOrdering}
	for i, c := range res.Leased {
		if c.State != want[i] {
			t.Errorf("leased claim %d is %v, want %v", c.ID, c.State, want[i])
		}
	}
	if res := h.mustOK(leaseClaims("g", "w2", 10, time.Minute)); len(res.Leased) != 0 {
		t.Fatalf("w2 leased %s while w1 holds them", leasedIDs(res))
	}
	h.now += int64(2 * time.Minute) // w1 dies: its leases end
	if res := h.mustOK(leaseClaims("g", "w2", 10, time.Minute)); leasedIDs(res) != "[1 2 3 5]" {
		t.Fatalf("after w1's leases ended w2 leased %s", leasedIDs(res))
	}
	h.mustOK(settle(1))
	h.mustOK(release(2))
	if res := h.mustOK(leaseClaims("g", "w3", 10, time.Minute)); res.Cursor != 3 {
		t.Fatalf("cursor %d, want 3 (claim 3 is still to compensate)", res.Cursor)
	}
}

// TestInvariantsCatchCompensationBeforeDeadline: a claim to compensate
// before its deadline is a broken state.
func TestInvariantsCatchCompensationBeforeDeadline(t *testing.T) {
	h := orderingSale(t, time.Minute, 1)
	h.f.s.claims.mutable(1).state = ClaimToCompensate // as a bug would
	if err := h.f.CheckInvariants(); err == nil {
		t.Fatal("a claim to compensate before its deadline passed the invariant check")
	}
}

// TestRestoreFormatV1: a version 1 snapshot (no ordering states) restores
// to the same state; one holding a state version 1 did not have is corrupt.
func TestRestoreFormatV1(t *testing.T) {
	h := orderingSale(t, time.Minute, 3)
	h.mustOK(settle(1))
	h.mustOK(release(2))
	asVersion := func(data []byte, version uint32, edit func(*fsmpb.SnapshotRecord)) []byte {
		r := bufio.NewReader(bytes.NewReader(data))
		var header fsmpb.SnapshotHeader
		if err := protodelim.UnmarshalFrom(r, &header); err != nil {
			t.Fatal(err)
		}
		header.FormatVersion = version
		var buf bytes.Buffer
		if _, err := protodelim.MarshalTo(&buf, &header); err != nil {
			t.Fatal(err)
		}
		for {
			var rec fsmpb.SnapshotRecord
			err := protodelim.UnmarshalFrom(r, &rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			edit(&rec)
			if _, err := protodelim.MarshalTo(&buf, &rec); err != nil {
				t.Fatal(err)
			}
		}
		return buf.Bytes()
	}
	keep := func(*fsmpb.SnapshotRecord) {}
	data := persist(t, h.f)
	f := restored(t, asVersion(data, 1, keep), Config{})
	if got, want := views(f), views(h.f); !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 restore: %v, want %v", got, want)
	}
	if d, _ := f.Digest(); d != h.digest() {
		t.Fatal("a v1 snapshot restores to another state")
	}
	ordering := func(rec *fsmpb.SnapshotRecord) {
		if rec.Claim != nil && rec.Claim.ClaimId == 3 {
			rec.Claim.State = fsmpb.ClaimState_CLAIM_STATE_ORDERING
		}
	}
	g, _ := New(Config{})
	if err := g.Restore(io.NopCloser(bytes.NewReader(asVersion(data, 1, ordering)))); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("v1 snapshot with an ORDERING claim: %v, want ErrSnapshotCorrupt", err)
	}
	// The same record in version 2 is a valid ordering claim.
	f = restored(t, asVersion(data, snapshotFormatVersion, ordering), Config{})
	if c, _ := f.Claim(3); c.State != ClaimOrdering {
		t.Fatalf("v2 claim 3 is %v, want ordering", c.State)
	}
	if got := f.ReservedClaims(10); len(got) != 1 || got[0].ID != 3 {
		t.Fatalf("an ordering claim waits for its deadline: %v", got)
	}
}
