package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

func leaseClaims(group, worker string, n uint32, d time.Duration) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_LEASE_CLAIMS, LeaseClaims: &fsmpb.LeaseClaims{
		Group: group, Worker: worker, Max: n, LeaseNanos: int64(d),
	}}
}

func leasedIDs(res *Result) string {
	var ids []uint64
	for _, c := range res.Leased {
		ids = append(ids, c.ID)
	}
	return fmt.Sprint(ids)
}

func TestLeaseClaims(t *testing.T) {
	h := newHarness(t)
	h.openSale(10)
	for n, user := range []string{"a", "b", "c", "d", "e"} {
		h.mustClaim(claimReq(user, n))
	}
	if res := h.mustOK(leaseClaims("g", "w1", 2, time.Minute)); leasedIDs(res) != "[1 2]" || res.Cursor != 1 {
		t.Fatalf("w1 leased %s, cursor %d", leasedIDs(res), res.Cursor)
	}
	if res := h.mustOK(leaseClaims("g", "w2", 2, time.Minute)); leasedIDs(res) != "[3 4]" {
		t.Fatalf("w2 leased %s while w1 holds 1 and 2", leasedIDs(res))
	}
	// Another group has its own cursor and leases.
	if res := h.mustOK(leaseClaims("other", "x", 10, time.Minute)); leasedIDs(res) != "[1 2 3 4 5]" {
		t.Fatalf("another group leased %s", leasedIDs(res))
	}
	h.mustOK(settle(1))
	h.mustOK(release(2))
	h.mustOK(settle(4))
	h.now += int64(time.Second)
	res := h.mustOK(leaseClaims("g", "w3", 10, time.Minute))
	if leasedIDs(res) != "[5]" || res.Cursor != 3 {
		t.Fatalf("w3 leased %s, cursor %d; want [5] from cursor 3", leasedIDs(res), res.Cursor)
	}
	if res.LeaseDeadline.UnixNano() != h.now+int64(time.Minute) {
		t.Fatalf("lease deadline %v", res.LeaseDeadline)
	}
	// A replacement worker resumes from the cursor once the leases end.
	h.now += int64(2 * time.Minute)
	if res := h.mustOK(leaseClaims("g", "w4", 10, time.Minute)); leasedIDs(res) != "[3 5]" {
		t.Fatalf("after the leases ended w4 leased %s, want [3 5]", leasedIDs(res))
	}
	h.mustOK(settle(3))
	h.mustOK(settle(5))
	if res := h.mustOK(leaseClaims("g", "w4", 10, time.Minute)); len(res.Leased) != 0 || res.Cursor != 6 {
		t.Fatalf("nothing reserved: leased %s, cursor %d", leasedIDs(res), res.Cursor)
	}
	for _, bad := range []*fsmpb.Command{
		leaseClaims("", "w", 1, time.Minute), leaseClaims("g", "", 1, time.Minute),
		leaseClaims("g", "w", 0, time.Minute), leaseClaims("g", "w", leaseClaimsMax+1, time.Minute),
		leaseClaims("g", "w", 1, 0), leaseClaims("g", "w", 1, 2*time.Hour),
	} {
		if got := h.one(bad); got.Reason != ReasonInvalidArgument {
			t.Errorf("%v: %v", bad.GetLeaseClaims(), got.Reason)
		}
	}
	if feeds := h.f.SettlementFeeds(); fmt.Sprint(feeds) != "[{g 6 0} {other 1 5}]" {
		t.Errorf("feeds %v", feeds)
	}
}
