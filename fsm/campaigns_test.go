package fsm

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// checkRefusal applies cmd and checks it is refused with want and changes
// nothing (the command carries no request ID, so nothing at all).
func checkRefusal(t *testing.T, h *harness, cmd *fsmpb.Command, want Reason) {
	t.Helper()
	before := h.digest()
	out := h.one(cmd)
	if out.Reason != want {
		t.Fatalf("%v: reason %v (%s), want %v", cmd.GetType(), out.Reason, out.Message, want)
	}
	if out.Message == "" {
		t.Errorf("%v refused with %v but no message", cmd.GetType(), want)
	}
	if after := h.digest(); after != before {
		t.Errorf("%v refused with %v changed the state", cmd.GetType(), want)
	}
}

func TestCreateCampaign(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*fsmpb.CreateCampaign)
		setup bool // create the same campaign first
		want  Reason
	}{
		{name: "flash sale", want: ReasonOK},
		{name: "card collect", edit: func(b *fsmpb.CreateCampaign) { b.Kind = fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT }, want: ReasonOK},
		{name: "ID of 128 bytes", edit: func(b *fsmpb.CreateCampaign) { b.CampaignId = strings.Repeat("x", 128) }, want: ReasonOK},
		{name: "no end", edit: func(b *fsmpb.CreateCampaign) { b.EndUnixNano = 0 }, want: ReasonOK},
		{name: "empty ID", edit: func(b *fsmpb.CreateCampaign) { b.CampaignId = "" }, want: ReasonInvalidArgument},
		{name: "ID of 129 bytes", edit: func(b *fsmpb.CreateCampaign) { b.CampaignId = strings.Repeat("x", 129) }, want: ReasonInvalidArgument},
		{name: "ID with a newline", edit: func(b *fsmpb.CreateCampaign) { b.CampaignId = "a\nb" }, want: ReasonInvalidArgument},
		{name: "ID with DEL", edit: func(b *fsmpb.CreateCampaign) { b.CampaignId = "a\x7fb" }, want: ReasonInvalidArgument},
		{name: "ID with a C1 control", edit: func(b *fsmpb.CreateCampaign) { b.CampaignId = "a\u0085b" }, want: ReasonInvalidArgument},
		{name: "non-ASCII ID", edit: func(b *fsmpb.CreateCampaign) { b.CampaignId = "双十一" }, want: ReasonOK},
		{name: "unknown kind", edit: func(b *fsmpb.CreateCampaign) { b.Kind = fsmpb.CampaignKind_CAMPAIGN_KIND_UNKNOWN }, want: ReasonInvalidArgument},
		{name: "kind from the future", edit: func(b *fsmpb.CreateCampaign) { b.Kind = 7 }, want: ReasonInvalidArgument},
		{name: "name too long", edit: func(b *fsmpb.CreateCampaign) { b.Name = strings.Repeat("n", 257) }, want: ReasonInvalidArgument},
		{name: "end before start", edit: func(b *fsmpb.CreateCampaign) { b.EndUnixNano = b.StartUnixNano - 1 }, want: ReasonInvalidArgument},
		{name: "end at start", edit: func(b *fsmpb.CreateCampaign) { b.EndUnixNano = b.StartUnixNano }, want: ReasonInvalidArgument},
		{name: "negative wave interval", edit: func(b *fsmpb.CreateCampaign) { b.WaveIntervalNanos = -1 }, want: ReasonInvalidArgument},
		{name: "negative TTL", edit: func(b *fsmpb.CreateCampaign) { b.ReservationTtlNanos = -1 }, want: ReasonInvalidArgument},
		{name: "duplicate", setup: true, want: ReasonAlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			b := &fsmpb.CreateCampaign{
				CampaignId: "c", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "Singles' Day",
				StartUnixNano: t0, EndUnixNano: t0 + int64(time.Hour), PerUserLimit: 2, WaveCount: 4,
				WaveIntervalNanos: int64(time.Minute), ReservationTtlNanos: int64(15 * time.Minute),
			}
			if tt.edit != nil {
				tt.edit(b)
			}
			if tt.setup {
				h.mustOK(createCampaign(b))
			}
			if tt.want != ReasonOK {
				checkRefusal(t, h, createCampaign(b), tt.want)
				return
			}
			res := h.mustOK(createCampaign(b))
			got, ok := h.f.Campaign(b.CampaignId)
			if !ok || res.Campaign == nil || *res.Campaign != got {
				t.Fatalf("result campaign %+v, stored %+v (found %v)", res.Campaign, got, ok)
			}
			want := Campaign{
				ID: b.CampaignId, Kind: KindFlashSale, Name: "Singles' Day", Start: time.Unix(0, t0).UTC(),
				End: timeFromNanos(b.EndUnixNano), PerUserLimit: 2, WaveCount: 4, WaveInterval: time.Minute,
				ReservationTTL: 15 * time.Minute, State: StateDraft,
			}
			if b.Kind == fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT {
				want.Kind = KindCardCollect
			}
			if got != want {
				t.Errorf("campaign %+v, want %+v", got, want)
			}
		})
	}
}

func TestUpdateCampaign(t *testing.T) {
	draft, open, closed := fsmpb.CampaignState_CAMPAIGN_STATE_DRAFT, fsmpb.CampaignState_CAMPAIGN_STATE_OPEN, fsmpb.CampaignState_CAMPAIGN_STATE_CLOSED
	ptr := func(v int64) *int64 { return &v }
	tests := []struct {
		name    string
		from    []fsmpb.CampaignState // states to go through first
		update  *fsmpb.UpdateCampaign
		want    Reason
		wantNow CampaignState
	}{
		{name: "draft to open", update: &fsmpb.UpdateCampaign{State: &open}, wantNow: StateOpen},
		{name: "draft to closed", update: &fsmpb.UpdateCampaign{State: &closed}, wantNow: StateClosed},
		{name: "open to closed", from: []fsmpb.CampaignState{open}, update: &fsmpb.UpdateCampaign{State: &closed}, wantNow: StateClosed},
		{name: "open to open", from: []fsmpb.CampaignState{open}, update: &fsmpb.UpdateCampaign{State: &open}, wantNow: StateOpen},
		{name: "nothing present", update: &fsmpb.UpdateCampaign{}, wantNow: StateDraft},
		{name: "open to draft", from: []fsmpb.CampaignState{open}, update: &fsmpb.UpdateCampaign{State: &draft}, want: ReasonInvalidArgument},
		{name: "reopen", from: []fsmpb.CampaignState{closed}, update: &fsmpb.UpdateCampaign{State: &open}, want: ReasonInvalidArgument},
		{name: "closed to draft", from: []fsmpb.CampaignState{closed}, update: &fsmpb.UpdateCampaign{State: &draft}, want: ReasonInvalidArgument},
		{name: "unknown state", update: &fsmpb.UpdateCampaign{State: new(fsmpb.CampaignState)}, want: ReasonInvalidArgument},
		{name: "new times", update: &fsmpb.UpdateCampaign{StartUnixNano: ptr(t0 + 5), EndUnixNano: ptr(t0 + 10)}, wantNow: StateDraft},
		{name: "end only", update: &fsmpb.UpdateCampaign{EndUnixNano: ptr(t0 + 1)}, wantNow: StateDraft},
		{name: "end before start", update: &fsmpb.UpdateCampaign{EndUnixNano: ptr(t0 - 1)}, want: ReasonInvalidArgument},
		{name: "start after end", update: &fsmpb.UpdateCampaign{StartUnixNano: ptr(t0 + int64(2*time.Hour))}, want: ReasonInvalidArgument},
		{name: "times of a closed campaign", from: []fsmpb.CampaignState{closed}, update: &fsmpb.UpdateCampaign{EndUnixNano: ptr(0)}, want: ReasonInvalidArgument},
		{name: "unknown campaign", update: &fsmpb.UpdateCampaign{CampaignId: "nope", State: &open}, want: ReasonCampaignNotFound},
		{name: "bad ID", update: &fsmpb.UpdateCampaign{CampaignId: "a\tb", State: &open}, want: ReasonInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustOK(createCampaign(&fsmpb.CreateCampaign{
				CampaignId: "c", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0, EndUnixNano: t0 + int64(time.Hour),
			}))
			for _, st := range tt.from {
				h.mustOK(setState("c", st))
			}
			if tt.update.CampaignId == "" {
				tt.update.CampaignId = "c"
			}
			if tt.want != ReasonOK {
				checkRefusal(t, h, updateCampaign(tt.update), tt.want)
				return
			}
			res := h.mustOK(updateCampaign(tt.update))
			got, _ := h.f.Campaign("c")
			if got.State != tt.wantNow || res.Campaign == nil || *res.Campaign != got {
				t.Fatalf("campaign %+v (result %+v), want state %v", got, res.Campaign, tt.wantNow)
			}
			if tt.update.StartUnixNano != nil && got.Start != timeFromNanos(*tt.update.StartUnixNano) {
				t.Errorf("start %v, want %v", got.Start, timeFromNanos(*tt.update.StartUnixNano))
			}
			if tt.update.EndUnixNano != nil && got.End != timeFromNanos(*tt.update.EndUnixNano) {
				t.Errorf("end %v, want %v", got.End, timeFromNanos(*tt.update.EndUnixNano))
			}
		})
	}
}

func TestAddItem(t *testing.T) {
	tests := []struct {
		name      string
		cmd       *fsmpb.Command
		close     bool
		want      Reason
		wantLimit uint32
	}{
		{name: "campaign's limit", cmd: addItem("c", "new", 10, 0), want: ReasonOK, wantLimit: 3},
		{name: "own limit", cmd: addItem("c", "new", 10, 5), want: ReasonOK, wantLimit: 5},
		{name: "no stock yet", cmd: addItem("c", "new", 0, 0), want: ReasonOK, wantLimit: 3},
		{name: "unknown campaign", cmd: addItem("x", "new", 10, 0), want: ReasonCampaignNotFound},
		{name: "closed campaign", cmd: addItem("c", "new", 10, 0), close: true, want: ReasonCampaignClosed},
		{name: "duplicate", cmd: addItem("c", "i", 10, 0), want: ReasonAlreadyExists},
		{name: "empty item ID", cmd: addItem("c", "", 10, 0), want: ReasonInvalidArgument},
		{name: "bad campaign ID", cmd: addItem("", "new", 10, 0), want: ReasonInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.openSale(1, func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 3 })
			if tt.close {
				h.mustOK(setState("c", fsmpb.CampaignState_CAMPAIGN_STATE_CLOSED))
			}
			if tt.want != ReasonOK {
				checkRefusal(t, h, tt.cmd, tt.want)
				return
			}
			res := h.mustOK(tt.cmd)
			stock := tt.cmd.AddItem.Stock
			want := Item{CampaignID: "c", ID: "new", Total: stock, Available: stock, PerUserLimit: tt.wantLimit}
			if got := h.item("c", "new"); got != want || res.Item == nil || *res.Item != want {
				t.Errorf("item %+v (result %+v), want %+v", got, res.Item, want)
			}
		})
	}
}

func TestDefaultPerUserLimitIsOne(t *testing.T) {
	h := newHarness(t)
	h.openSale(10)
	if got := h.item("c", "i").PerUserLimit; got != defaultPerUserLimit || defaultPerUserLimit != 1 {
		t.Fatalf("effective limit %d, want 1", got)
	}
	h.mustClaim(claimReq("u", 1))
	if out := h.claim(claimReq("u", 2)); out.Reason != ReasonLimitReached {
		t.Fatalf("second claim: %v, want LIMIT_REACHED", out.Reason)
	}
}

func TestAdjustStock(t *testing.T) {
	tests := []struct {
		name      string
		cmd       *fsmpb.Command
		want      Reason
		wantTotal uint64
		wantAvail uint64
	}{
		{name: "add", cmd: adjustStock("c", "i", 5), wantTotal: 15, wantAvail: 13},
		{name: "remove available", cmd: adjustStock("c", "i", -8), wantTotal: 2, wantAvail: 0},
		{name: "remove more than available", cmd: adjustStock("c", "i", -9), want: ReasonInsufficientStock},
		{name: "remove the most negative", cmd: adjustStock("c", "i", math.MinInt64), want: ReasonInsufficientStock},
		{name: "zero", cmd: adjustStock("c", "i", 0), want: ReasonInvalidArgument},
		{name: "unknown campaign", cmd: adjustStock("x", "i", 1), want: ReasonCampaignNotFound},
		{name: "unknown item", cmd: adjustStock("c", "x", 1), want: ReasonItemNotFound},
		{name: "bad item ID", cmd: adjustStock("c", "", 1), want: ReasonInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.openSale(10, func(b *fsmpb.CreateCampaign) { b.PerUserLimit = 2 })
			h.mustClaim(claimReq("u", 1))
			id := h.mustClaim(claimReq("v", 1)).ID
			h.mustOK(settle(id)) // 8 available, 1 reserved, 1 sold
			if tt.want != ReasonOK {
				checkRefusal(t, h, tt.cmd, tt.want)
				return
			}
			res := h.mustOK(tt.cmd)
			want := Item{CampaignID: "c", ID: "i", Total: tt.wantTotal, Available: tt.wantAvail, Reserved: 1, Sold: 1, PerUserLimit: 2}
			if got := h.item("c", "i"); got != want || *res.Item != want {
				t.Errorf("item %+v (result %+v), want %+v", got, res.Item, want)
			}
		})
	}
}

func TestAdjustStockOverflowRefused(t *testing.T) {
	h := newHarness(t)
	h.openSale(math.MaxUint64 - 1)
	checkRefusal(t, h, adjustStock("c", "i", 2), ReasonInvalidArgument)
	h.mustOK(adjustStock("c", "i", 1))
}

func TestReadsAreSorted(t *testing.T) {
	h := newHarness(t)
	for _, id := range []string{"b", "c", "a"} {
		h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: id, Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE}))
		for _, item := range []string{"z", "x", "y"} {
			h.mustOK(addItem(id, item, 1, 0))
		}
	}
	var ids []string
	for _, c := range h.f.Campaigns() {
		ids = append(ids, c.ID)
	}
	if got := strings.Join(ids, ","); got != "a,b,c" {
		t.Errorf("campaigns %s, want a,b,c", got)
	}
	ids = nil
	for _, it := range h.f.Items("") {
		ids = append(ids, it.CampaignID+"/"+it.ID)
	}
	if got := strings.Join(ids, ","); got != "a/x,a/y,a/z,b/x,b/y,b/z,c/x,c/y,c/z" {
		t.Errorf("items %s", got)
	}
	if got := h.f.Items("b"); len(got) != 3 || got[0].ID != "x" || got[2].ID != "z" {
		t.Errorf("items of b: %+v", got)
	}
	if got := h.f.Items("nope"); len(got) != 0 {
		t.Errorf("items of an unknown campaign: %+v", got)
	}
	if st := h.f.Stats(); st.Campaigns != 3 || st.Items != 9 {
		t.Errorf("stats %+v", st)
	}
}
