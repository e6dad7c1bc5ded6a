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

// TestLeaseClaimsOfCampaigns: a lease naming campaigns hands out only their
// claims, shares the group's cursor with every other worker of the group,
// and a lease naming none hands out every campaign's claims, as before.
func TestLeaseClaimsOfCampaigns(t *testing.T) {
	h := newHarness(t)
	h.openSale(10)
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "d", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "other", StartUnixNano: t0}))
	h.mustOK(openCampaign("d"))
	h.mustOK(addItem("d", "j", 10, 0))
	for n, user := range []string{"a", "b", "c", "d"} {
		req := claimReq(user, n)
		if n%2 == 1 {
			req.CampaignId, req.ItemId = "d", "j"
		}
		h.mustClaim(req) // claims 1 and 3 of c, 2 and 4 of d
	}
	of := func(worker string, campaigns ...string) *fsmpb.Command {
		cmd := leaseClaims("g", worker, 10, time.Minute)
		cmd.LeaseClaims.Campaigns = campaigns
		return cmd
	}
	if res := h.mustOK(of("wc", "c")); leasedIDs(res) != "[1 3]" {
		t.Fatalf("a worker of campaign c leased %s, want [1 3]", leasedIDs(res))
	}
	if res := h.mustOK(of("wx", "nosuch")); len(res.Leased) != 0 {
		t.Fatalf("a worker of a campaign without claims leased %s", leasedIDs(res))
	}
	if res := h.mustOK(of("wd", "d", "nosuch")); leasedIDs(res) != "[2 4]" {
		t.Fatalf("a worker of campaign d leased %s, want [2 4]", leasedIDs(res))
	}
	h.mustOK(settle(1))
	h.mustOK(settle(2))
	h.now += int64(2 * time.Minute)
	if res := h.mustOK(of("any")); leasedIDs(res) != "[3 4]" || res.Cursor != 3 {
		t.Fatalf("a worker of every campaign leased %s from cursor %d, want [3 4] from 3", leasedIDs(res), res.Cursor)
	}
	many := make([]string, leaseCampaignsMax+1)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	for _, bad := range [][]string{{""}, {"c", "bad\x00id"}, many} {
		if got := h.one(of("w", bad...)); got.Reason != ReasonInvalidArgument {
			t.Errorf("campaigns %q: %v", bad, got.Reason)
		}
	}
}

// TestCampaignCursorPassesAnotherBacklog: a campaign whose claims sit open
// (its workers down) past one lease's scan does not hold up the workers of
// another campaign in the same group: a lease naming that one moves its
// own cursor past the backlog, the next one reaches its claims, and the
// campaign cursor survives a snapshot, in the digest.
func TestCampaignCursorPassesAnotherBacklog(t *testing.T) {
	build := func() *harness {
		h := newHarness(t)
		h.openSale(leaseScanMax + 100) // campaign c: the backlog
		h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "d", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "other", StartUnixNano: t0}))
		h.mustOK(openCampaign("d"))
		h.mustOK(addItem("d", "j", 10, 0))
		var batch []*fsmpb.ClaimRequest
		for n := range leaseScanMax + 10 {
			batch = append(batch, claimReq(fmt.Sprint("u", n), n))
			if len(batch) == 1000 {
				h.claims(batch...)
				batch = nil
			}
		}
		h.claims(batch...)
		for n := range 3 {
			req := claimReq(fmt.Sprint("d", n), n)
			req.CampaignId, req.ItemId = "d", "j"
			h.mustClaim(req)
		}
		return h
	}
	h := build()
	of := func(worker string, campaigns ...string) *fsmpb.Command {
		cmd := leaseClaims("g", worker, 10, time.Minute)
		cmd.LeaseClaims.Campaigns = campaigns
		return cmd
	}
	first := h.mustOK(of("wd", "d"))
	if len(first.Leased) != 0 || first.Cursor != leaseScanMax+1 {
		t.Fatalf("the first lease for d leased %s, cursor %d: want none past one scan of c's backlog, cursor %d", leasedIDs(first), first.Cursor, leaseScanMax+1)
	}
	base := h.digest()
	data := persist(t, h.f)
	restoredH := &harness{t: t, f: restored(t, data, Config{}), index: h.index, now: h.now}
	if restoredH.digest() != base {
		t.Fatal("restored digest differs")
	}
	want := fmt.Sprint([]uint64{leaseScanMax + 11, leaseScanMax + 12, leaseScanMax + 13})
	for _, x := range []*harness{h, restoredH} {
		if res := x.mustOK(of("wd", "d")); leasedIDs(res) != want || res.Cursor != leaseScanMax+11 {
			t.Fatalf("the second lease for d leased %s, cursor %d; want %s", leasedIDs(res), res.Cursor, want)
		}
		// The group's own cursor still waits at c's first open claim.
		if res := x.mustOK(of("wc", "c")); res.Cursor != 1 || len(res.Leased) != 10 {
			t.Fatalf("a lease for c leased %s, cursor %d", leasedIDs(res), res.Cursor)
		}
	}
	if h.digest() != restoredH.digest() {
		t.Fatal("original and restored FSMs diverged")
	}
	// The campaign cursor is in the digest: the same state but for it (a
	// lease for a campaign that does not exist creates the group, leases
	// nothing and moves no cursor) digests differently.
	other := build()
	other.mustOK(of("wx", "nosuch"))
	if other.digest() == base {
		t.Fatal("a campaign cursor leaves the digest as it was")
	}
}
