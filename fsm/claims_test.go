package fsm

import (
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

func TestClaimGranted(t *testing.T) {
	h := newHarness(t)
	h.openSale(10, func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 3; b.ReservationTtlNanos = int64(time.Minute) })
	h.now += 7
	outs := h.claims(
		&fsmpb.ClaimRequest{RequestId: "r1", CampaignId: "c", ItemId: "i", UserId: "alice", Quantity: 2},
		&fsmpb.ClaimRequest{RequestId: "r2", CampaignId: "c", ItemId: "i", UserId: "bob", Quantity: 1},
		&fsmpb.ClaimRequest{RequestId: "r3", CampaignId: "c", ItemId: "i", UserId: "alice", Quantity: 1},
	)
	created := time.Unix(0, t0+7).UTC()
	for n, out := range outs {
		if out.Reason != ReasonOK || out.Claim.ID != uint64(n+1) {
			t.Fatalf("claim %d: %v %s, ID %d", n, out.Reason, out.Message, out.Claim.ID)
		}
	}
	want := Claim{
		ID: 1, CampaignID: "c", ItemID: "i", UserID: "alice", Quantity: 2, State: ClaimReserved,
		Created: created, Deadline: created.Add(time.Minute), RequestID: "r1",
	}
	if outs[0].Claim != want {
		t.Errorf("claim %+v, want %+v", outs[0].Claim, want)
	}
	if got, ok := h.f.Claim(1); !ok || got != want {
		t.Errorf("stored claim %+v, want %+v", got, want)
	}
	if got := h.item("c", "i"); got.Available != 6 || got.Reserved != 4 || got.Sold != 0 || got.Total != 10 {
		t.Errorf("item %+v, want 6 available and 4 reserved", got)
	}
	if got := h.f.ClaimsByUser("alice", ""); len(got) != 2 || got[0].ID != 1 || got[1].ID != 3 {
		t.Errorf("alice's claims %+v, want 1 and 3", got)
	}
	if _, ok := h.f.Claim(4); ok {
		t.Error("claim 4 exists")
	}
	if _, ok := h.f.Claim(0); ok {
		t.Error("claim 0 exists")
	}
}

func TestClaimRefusals(t *testing.T) {
	type setup func(h *harness)
	sale := func(stock uint64, opts ...func(*fsmpb.CreateCampaign)) setup {
		return func(h *harness) { h.openSale(stock, opts...) }
	}
	limit3 := func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 3 }
	claimed := func(h *harness) { h.mustClaim(claimReq("u", 0)) }
	req := func(edit func(r *fsmpb.ClaimRequest)) *fsmpb.ClaimRequest {
		r := claimReq("u", 1)
		if edit != nil {
			edit(r)
		}
		return r
	}
	tests := []struct {
		name     string
		setup    []setup
		req      *fsmpb.ClaimRequest
		want     Reason
		noRecord bool // refused before the request ID can be recorded
	}{
		{"empty request ID", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.RequestId = "" }), ReasonInvalidArgument, true},
		{"request ID too long", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.RequestId = strings.Repeat("r", 129) }), ReasonInvalidArgument, true},
		{"empty campaign ID", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.CampaignId = "" }), ReasonInvalidArgument, false},
		{"empty item ID", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.ItemId = "" }), ReasonInvalidArgument, false},
		{"empty user ID", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.UserId = "" }), ReasonInvalidArgument, false},
		{"user ID with a control character", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.UserId = "u\x00" }), ReasonInvalidArgument, false},
		{"zero quantity", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.Quantity = 0 }), ReasonInvalidArgument, false},
		{"quantity above the limit", []setup{sale(5, limit3)}, req(func(r *fsmpb.ClaimRequest) { r.Quantity = 4 }), ReasonInvalidArgument, false},
		{"unknown campaign", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.CampaignId = "x" }), ReasonCampaignNotFound, false},
		{"card-collect campaign", []setup{sale(5, func(b *fsmpb.CreateCampaign) { b.Kind = fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT })}, req(nil), ReasonWrongCampaignKind, false},
		{"draft campaign", []setup{func(h *harness) {
			h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "c", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE}))
			h.mustOK(addItem("c", "i", 5, 0))
		}}, req(nil), ReasonCampaignClosed, false},
		{"closed campaign", []setup{sale(5), func(h *harness) { h.mustOK(setState("c", fsmpb.CampaignState_CAMPAIGN_STATE_CLOSED)) }}, req(nil), ReasonCampaignClosed, false},
		{"before start", []setup{sale(5, func(b *fsmpb.CreateCampaign) { b.StartUnixNano = t0 + 1 })}, req(nil), ReasonCampaignClosed, false},
		{"at end", []setup{sale(5, func(b *fsmpb.CreateCampaign) { b.StartUnixNano = t0 - 10; b.EndUnixNano = t0 })}, req(nil), ReasonCampaignClosed, false},
		{"closed beats unknown item", []setup{sale(5, func(b *fsmpb.CreateCampaign) { b.StartUnixNano = t0 + 1 })}, req(func(r *fsmpb.ClaimRequest) { r.ItemId = "x" }), ReasonCampaignClosed, false},
		{"wave not open", []setup{sale(5, func(b *fsmpb.CreateCampaign) { b.WaveCount = 2; b.WaveIntervalNanos = int64(time.Hour) })},
			req(func(r *fsmpb.ClaimRequest) { r.UserId = userInWave(1, 2) }), ReasonNotEligible, false},
		{"unknown item", []setup{sale(5)}, req(func(r *fsmpb.ClaimRequest) { r.ItemId = "x" }), ReasonItemNotFound, false},
		{"limit reached", []setup{sale(5), claimed}, req(nil), ReasonLimitReached, false},
		{"limit beats sold out", []setup{sale(1), claimed}, req(nil), ReasonLimitReached, false},
		{"limit counts quantity", []setup{sale(5, limit3), claimed}, req(func(r *fsmpb.ClaimRequest) { r.Quantity = 3 }), ReasonLimitReached, false},
		{"sold out", []setup{sale(0)}, req(nil), ReasonSoldOut, false},
		{"less available than asked", []setup{sale(2, limit3)}, req(func(r *fsmpb.ClaimRequest) { r.Quantity = 3 }), ReasonSoldOut, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			for _, s := range tt.setup {
				s(h)
			}
			before, records := h.businessDigest(), h.f.Stats().IdempotencyRecords
			out := h.claim(tt.req)
			if out.Reason != tt.want || out.Message == "" || out.Claim != (Claim{}) {
				t.Fatalf("reason %v (%q, claim %+v), want %v with a message", out.Reason, out.Message, out.Claim, tt.want)
			}
			if h.businessDigest() != before {
				t.Error("refused claim changed the state")
			}
			wantRecords := records + 1
			if tt.noRecord {
				wantRecords = records
			}
			if got := h.f.Stats().IdempotencyRecords; got != wantRecords {
				t.Errorf("%d idempotency records, want %d", got, wantRecords)
			}
		})
	}
}

// userInWave returns a user ID that falls in wave w of n.
func userInWave(w, n uint32) string {
	for i := 0; ; i++ {
		if u := fmt.Sprintf("user-%d", i); EntryWave(u, n) == w {
			return u
		}
	}
}

func TestEntryWave(t *testing.T) {
	for _, user := range []string{"", "alice", "user-12345", "双十一"} {
		h := fnv.New32a()
		h.Write([]byte(user))
		for _, n := range []uint32{2, 3, 10, 1 << 31} {
			if got, want := EntryWave(user, n), h.Sum32()%n; got != want {
				t.Errorf("EntryWave(%q, %d) = %d, want %d", user, n, got, want)
			}
		}
		if EntryWave(user, 0) != 0 || EntryWave(user, 1) != 0 {
			t.Errorf("EntryWave(%q) with one or no wave is not 0", user)
		}
	}
	// Pinned: front doors compute the same waves.
	if got := EntryWave("alice", 1000); got != 479 {
		t.Errorf("EntryWave(alice, 1000) = %d, want 479", got)
	}
	if got := EntryWave("user-42", 16); got != 11 {
		t.Errorf("EntryWave(user-42, 16) = %d, want 11", got)
	}
}

func TestWavesOpenInTurn(t *testing.T) {
	const waves = 4
	interval := int64(time.Minute)
	h := newHarness(t)
	h.openSale(100, func(b *fsmpb.CreateCampaign) { b.WaveCount = waves; b.WaveIntervalNanos = interval })
	for w := uint32(0); w < waves; w++ {
		user := userInWave(w, waves)
		opens := t0 + int64(w)*interval
		if w > 0 {
			h.now = opens - 1
			if out := h.claim(claimReq(user, 1)); out.Reason != ReasonNotEligible {
				t.Fatalf("wave %d one nanosecond early: %v, want NOT_ELIGIBLE", w, out.Reason)
			}
		}
		h.now = opens
		if out := h.claim(claimReq(user, 2)); out.Reason != ReasonOK {
			t.Fatalf("wave %d at its opening: %v (%s)", w, out.Reason, out.Message)
		}
	}
}

func TestWaveOpeningSaturates(t *testing.T) {
	c := &campaign{start: t0, waveInterval: 1 << 62}
	if got := c.waveOpensAt(3); got != 1<<63-1 {
		t.Errorf("wave 3 of a huge interval opens at %d, want the end of time", got)
	}
}

func TestSettleAndRelease(t *testing.T) {
	tests := []struct {
		name     string
		before   []func(id uint64) *fsmpb.Command // applied to claim 1 first
		cmd      func(id uint64) *fsmpb.Command
		id       uint64
		want     Reason
		state    ClaimState
		item     Item // counters after
		noChange bool
	}{
		{name: "settle a reservation", cmd: settle, id: 1, state: ClaimSettled, item: Item{Available: 4, Sold: 1}},
		{name: "settle again", before: []func(uint64) *fsmpb.Command{settle}, cmd: settle, id: 1, state: ClaimSettled, item: Item{Available: 4, Sold: 1}, noChange: true},
		{name: "settle a released claim", before: []func(uint64) *fsmpb.Command{release}, cmd: settle, id: 1, want: ReasonAlreadyReleased, state: ClaimReleased, item: Item{Available: 5}, noChange: true},
		{name: "release a reservation", cmd: release, id: 1, state: ClaimReleased, item: Item{Available: 5}},
		{name: "release again", before: []func(uint64) *fsmpb.Command{release}, cmd: release, id: 1, state: ClaimReleased, item: Item{Available: 5}, noChange: true},
		{name: "release a settled claim", before: []func(uint64) *fsmpb.Command{settle}, cmd: release, id: 1, want: ReasonAlreadySettled, state: ClaimSettled, item: Item{Available: 4, Sold: 1}, noChange: true},
		{name: "settle an unknown claim", cmd: settle, id: 2, want: ReasonClaimNotFound, item: Item{Available: 4, Reserved: 1}, noChange: true},
		{name: "release claim 0", cmd: release, id: 0, want: ReasonClaimNotFound, item: Item{Available: 4, Reserved: 1}, noChange: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.openSale(5)
			h.mustClaim(claimReq("u", 1))
			for _, b := range tt.before {
				h.mustOK(b(1))
			}
			before := h.digest()
			out := h.one(tt.cmd(tt.id))
			if out.Reason != tt.want {
				t.Fatalf("reason %v (%s), want %v", out.Reason, out.Message, tt.want)
			}
			if tt.want != ReasonClaimNotFound && (out.Claim.ID != tt.id || out.Claim.State != tt.state) {
				t.Errorf("outcome claim %+v, want claim %d in state %v", out.Claim, tt.id, tt.state)
			}
			if (h.digest() == before) != tt.noChange {
				t.Errorf("state changed: %v, want %v", h.digest() != before, !tt.noChange)
			}
			tt.item.CampaignID, tt.item.ID, tt.item.Total, tt.item.PerUserLimit = "c", "i", 5, 1
			if got := h.item("c", "i"); got != tt.item {
				t.Errorf("item %+v, want %+v", got, tt.item)
			}
		})
	}
}

func TestReleaseFreesTheLimit(t *testing.T) {
	h := newHarness(t)
	h.openSale(5)
	first := h.mustClaim(claimReq("u", 1))
	if out := h.claim(claimReq("u", 2)); out.Reason != ReasonLimitReached {
		t.Fatalf("second claim: %v, want LIMIT_REACHED", out.Reason)
	}
	h.mustOK(release(first.ID))
	second := h.mustClaim(claimReq("u", 3))
	h.mustOK(settle(second.ID))
	if out := h.claim(claimReq("u", 4)); out.Reason != ReasonLimitReached {
		t.Fatalf("claim after settling: %v, want LIMIT_REACHED (settled claims count)", out.Reason)
	}
	got := h.f.ClaimsByUser("u", "c")
	if len(got) != 2 || got[0].State != ClaimReleased || got[1].State != ClaimSettled {
		t.Errorf("claims %+v, want one released and one settled", got)
	}
}

func TestLimitIsPerItem(t *testing.T) {
	h := newHarness(t)
	h.openSale(5)
	h.mustOK(addItem("c", "j", 5, 0))
	h.mustClaim(claimReq("u", 1))
	other := claimReq("u", 2)
	other.ItemId = "j"
	h.mustClaim(other)
}

func TestExpire(t *testing.T) {
	ttl := int64(10 * time.Minute)
	h := newHarness(t)
	h.openSale(10, func(b *fsmpb.CreateCampaign) { b.ReservationTtlNanos = ttl })
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "forever", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0}))
	h.mustOK(openCampaign("forever"))
	h.mustOK(addItem("forever", "i", 10, 0))
	for n := range 3 { // claims 1-3 at t0
		h.mustClaim(claimReq(fmt.Sprint("early", n), 1))
	}
	noDeadline := claimReq("early0", 2)
	noDeadline.CampaignId = "forever"
	h.mustClaim(noDeadline) // claim 4: never expires
	h.now = t0 + 5*int64(time.Minute)
	h.mustClaim(claimReq("late0", 1)) // claim 5
	h.mustClaim(claimReq("late1", 1)) // claim 6
	h.mustOK(settle(1))
	h.mustOK(release(2))

	expireAt := func(now int64, want int) {
		t.Helper()
		h.now = now
		res := h.mustOK(expire())
		if res.Expired != want || !strings.Contains(res.Outcomes[0].Message, fmt.Sprint(want)) {
			t.Fatalf("at %v: expired %d (%q), want %d", time.Duration(now-t0), res.Expired, res.Outcomes[0].Message, want)
		}
	}
	expireAt(t0+ttl, 0) // deadline of claim 3 is t0+ttl: not before the command time
	expireAt(t0+ttl+1, 1)
	if c, _ := h.f.Claim(3); c.State != ClaimReleased {
		t.Errorf("claim 3 is %v, want released", c.State)
	}
	if got := h.item("c", "i"); got.Available != 7 || got.Reserved != 2 || got.Sold != 1 {
		t.Errorf("item %+v, want 7 available, 2 reserved, 1 sold", got)
	}
	expireAt(t0+ttl+5*int64(time.Minute)+1, 2)
	if got := h.item("c", "i"); got.Available != 9 || got.Reserved != 0 || got.Sold != 1 {
		t.Errorf("item %+v, want 9 available, 0 reserved, 1 sold", got)
	}
	expireAt(t0+100*ttl, 0)
	if c, _ := h.f.Claim(4); c.State != ClaimReserved || !c.Deadline.IsZero() {
		t.Errorf("claim without deadline: %+v", c)
	}
}

func TestReservedClaimsByDeadline(t *testing.T) {
	h := newHarness(t)
	h.openSale(10, func(b *fsmpb.CreateCampaign) { b.ReservationTtlNanos = int64(10 * time.Minute) })
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{
		CampaignId: "b", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0, ReservationTtlNanos: int64(time.Minute),
	}))
	h.mustOK(openCampaign("b"))
	h.mustOK(addItem("b", "i", 10, 0))
	inB := func(user string) *fsmpb.ClaimRequest {
		r := claimReq(user, 1)
		r.CampaignId = "b"
		return r
	}
	h.mustClaim(claimReq("u1", 1)) // 1: deadline t0+10m
	h.now += int64(time.Minute)
	h.mustClaim(inB("u2"))         // 2: t0+2m
	h.mustClaim(claimReq("u3", 1)) // 3: t0+11m
	h.now += int64(time.Minute)
	h.mustClaim(inB("u4")) // 4: t0+3m
	h.mustClaim(inB("u5")) // 5: t0+3m
	h.mustOK(settle(4))
	ids := func(limit int) string {
		var s []string
		for _, c := range h.f.ReservedClaims(limit) {
			s = append(s, fmt.Sprint(c.ID))
		}
		return strings.Join(s, ",")
	}
	if got := ids(10); got != "2,5,1,3" {
		t.Errorf("by deadline: %s, want 2,5,1,3", got)
	}
	if got := ids(2); got != "2,5" {
		t.Errorf("first two: %s, want 2,5", got)
	}
	if got := ids(0); got != "" {
		t.Errorf("none: %s", got)
	}
}

func TestChanged(t *testing.T) {
	h := newHarness(t)
	h.openSale(1)
	ch := h.f.Changed()
	h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "n1"}))
	h.claim(&fsmpb.ClaimRequest{RequestId: "bad", CampaignId: "c", ItemId: "x", UserId: "u", Quantity: 1})
	select {
	case <-ch:
		t.Fatal("closed by changes nobody watches")
	default:
	}
	h.mustClaim(claimReq("u", 1))
	select {
	case <-ch:
	default:
		t.Fatal("not closed after a claim")
	}
	next := h.f.Changed()
	select {
	case <-next:
		t.Fatal("the next channel is already closed")
	default:
	}
	h.mustOK(setFrontDoor(&fsmpb.FrontDoorConfig{}))
	select {
	case <-next:
	default:
		t.Fatal("not closed after a front-door config change")
	}
}

func TestClaimsByUserAcrossCampaigns(t *testing.T) {
	h := newHarness(t)
	h.openSale(5)
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "d", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0}))
	h.mustOK(openCampaign("d"))
	h.mustOK(addItem("d", "i", 5, 0))
	inD := claimReq("u", 2)
	inD.CampaignId = "d"
	h.mustClaim(claimReq("v", 1))
	h.mustClaim(inD)
	h.mustClaim(claimReq("u", 1))
	tests := []struct{ user, campaign, want string }{
		{"u", "", "2,3"}, {"u", "d", "2"}, {"u", "c", "3"}, {"v", "", "1"}, {"w", "", ""}, {"u", "x", ""},
	}
	for _, tt := range tests {
		var ids []string
		for _, c := range h.f.ClaimsByUser(tt.user, tt.campaign) {
			ids = append(ids, fmt.Sprint(c.ID))
		}
		if got := strings.Join(ids, ","); got != tt.want {
			t.Errorf("ClaimsByUser(%q, %q) = %s, want %s", tt.user, tt.campaign, got, tt.want)
		}
	}
}

func TestClockNeverRunsBackwards(t *testing.T) {
	h := newHarness(t)
	h.openSale(5, func(b *fsmpb.CreateCampaign) { b.EndUnixNano = t0 + 10 })
	h.now = t0 + 10
	if out := h.claim(claimReq("u", 1)); out.Reason != ReasonCampaignClosed {
		t.Fatalf("at the end: %v", out.Reason)
	}
	h.now = t0 + 5 // a new leader whose clock lags
	if out := h.claim(claimReq("u", 2)); out.Reason != ReasonCampaignClosed {
		t.Fatalf("a lagging clock reopened the campaign: %v", out.Reason)
	}
}

// TestBatchAnswersAsClaimsOneByOne applies a batch that switches between
// items and campaigns, with bad and unknown IDs between claims on the same
// item, and expects every outcome, and the state, to be what the same
// claims get one entry each: the batch's memory of the last item it
// resolved must never answer for a claim that names another.
func TestBatchAnswersAsClaimsOneByOne(t *testing.T) {
	req := func(n int, campaignID, itemID string, quantity uint32) *fsmpb.ClaimRequest {
		return &fsmpb.ClaimRequest{
			RequestId: fmt.Sprint("r", n), CampaignId: campaignID, ItemId: itemID, UserId: fmt.Sprint("u", n%4), Quantity: quantity,
		}
	}
	batch := []*fsmpb.ClaimRequest{
		req(0, "c", "i", 1), req(1, "c", "i", 1), req(2, "c", "j", 1), req(3, "c", "i", 1),
		req(4, "c\x00", "i", 1), req(5, "c", "i\x00", 1), req(6, "c", "i", 1), req(7, "c", "nope", 1),
		req(8, "c", "i", 1), req(9, "closed", "i", 1), req(10, "c", "i", 0), req(11, "c", "i", 9),
		req(12, "nope", "i", 1), req(13, "c", "j", 1), req(14, "c", "i", 1), req(15, "c", "j", 2), req(16, "c", "i", 1),
		req(0, "c", "i", 1), req(1, "c", "j", 1), // repeated request IDs, the second with another payload
	}
	setup := func() *harness {
		h := newHarness(t)
		h.openSale(10, func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 2 })
		h.mustOK(addItem("c", "j", 3, 0))
		h.mustOK(createCampaign(&fsmpb.CreateCampaign{
			CampaignId: "closed", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0,
		}))
		h.mustOK(addItem("closed", "i", 3, 0))
		return h
	}
	together, alone := setup(), setup()
	outs := together.claims(batch...)
	reasons := map[Reason]bool{}
	for n, r := range batch {
		want := alone.claim(r)
		if outs[n] != want {
			t.Errorf("claim %d (%s/%s): batch %+v, alone %+v", n, r.CampaignId, r.ItemId, outs[n], want)
		}
		reasons[want.Reason] = true
	}
	for _, r := range []Reason{ReasonOK, ReasonInvalidArgument, ReasonItemNotFound, ReasonCampaignNotFound,
		ReasonCampaignClosed, ReasonLimitReached, ReasonSoldOut, ReasonRequestIDReused} {
		if !reasons[r] {
			t.Errorf("no claim got %v; the batch does not test it", r)
		}
	}
	if together.businessDigest() != alone.businessDigest() {
		t.Error("the batch left another state than the claims one by one")
	}
}
