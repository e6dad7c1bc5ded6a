package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

func defineCards(b *fsmpb.DefineCards) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_DEFINE_CARDS, DefineCards: b}
}

func grantDraws(campaignID, user string, n uint32) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_GRANT_DRAWS, GrantDraws: &fsmpb.GrantDraws{CampaignId: campaignID, UserId: user, Count: n}}
}

func drawCard(campaignID, user string, seed uint64) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD, Seed: seed, DrawCard: &fsmpb.DrawCard{CampaignId: campaignID, UserId: user}}
}

func redeemSet(campaignID, user string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_REDEEM_SET, RedeemSet: &fsmpb.RedeemSet{CampaignId: campaignID, UserId: user}}
}

func closeAndSplit(campaignID string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLOSE_AND_SPLIT, CloseAndSplit: &fsmpb.CloseAndSplit{CampaignId: campaignID}}
}

// openCards creates card-collect campaign "cc" from t0 with def's cards
// (its campaign ID is set here) and opens it.
func (h *harness) openCards(def *fsmpb.DefineCards) {
	h.t.Helper()
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "cc", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, Name: "cards", StartUnixNano: t0}))
	def.CampaignId = "cc"
	h.mustOK(defineCards(def))
	h.mustOK(openCampaign("cc"))
}

// threeCards is a definition of types a, b, c weighing 1, 2 and 7, all
// three making a set.
func threeCards() *fsmpb.DefineCards {
	return &fsmpb.DefineCards{
		Types:    []*fsmpb.CardType{{TypeId: "a", Weight: 1}, {TypeId: "b", Weight: 2}, {TypeId: "c", Weight: 7}},
		SetTypes: []string{"a", "b", "c"}, RewardPool: 3, PotCents: 1000,
	}
}

func (h *harness) holder(user string) CardHolder {
	h.t.Helper()
	v, ok := h.f.CardHolder("cc", user)
	if !ok {
		h.t.Fatalf("no cards in cc")
	}
	return v
}

// giveSets grants user enough draws and draws until they hold n full sets
// of threeCards, with seeds from rng.
func (h *harness) giveSets(user string, n uint64, rng *rand.Rand) {
	h.t.Helper()
	for h.holder(user).FullSets < n {
		h.mustOK(grantDraws("cc", user, 1))
		h.mustOK(drawCard("cc", user, rng.Uint64()))
	}
}

func TestDefineCardsRefusals(t *testing.T) {
	h := newHarness(t)
	h.openSale(1)
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "cc", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT}))
	for name, tc := range map[string]struct {
		def  *fsmpb.DefineCards
		want Reason
	}{
		"flash sale":     {&fsmpb.DefineCards{CampaignId: "c", Types: threeCards().Types, SetTypes: []string{"a"}}, ReasonWrongCampaignKind},
		"no campaign":    {&fsmpb.DefineCards{CampaignId: "x", Types: threeCards().Types, SetTypes: []string{"a"}}, ReasonCampaignNotFound},
		"no types":       {&fsmpb.DefineCards{CampaignId: "cc", SetTypes: []string{"a"}}, ReasonInvalidArgument},
		"zero weight":    {&fsmpb.DefineCards{CampaignId: "cc", Types: []*fsmpb.CardType{{TypeId: "a"}}, SetTypes: []string{"a"}}, ReasonInvalidArgument},
		"duplicate type": {&fsmpb.DefineCards{CampaignId: "cc", Types: []*fsmpb.CardType{{TypeId: "a", Weight: 1}, {TypeId: "a", Weight: 1}}, SetTypes: []string{"a"}}, ReasonInvalidArgument},
		"no set":         {&fsmpb.DefineCards{CampaignId: "cc", Types: threeCards().Types}, ReasonInvalidArgument},
		"unknown set":    {&fsmpb.DefineCards{CampaignId: "cc", Types: threeCards().Types, SetTypes: []string{"z"}}, ReasonInvalidArgument},
		"set twice":      {&fsmpb.DefineCards{CampaignId: "cc", Types: threeCards().Types, SetTypes: []string{"a", "a"}}, ReasonInvalidArgument},
	} {
		before := h.businessDigest()
		if got := h.one(defineCards(tc.def)); got.Reason != tc.want {
			t.Errorf("%s: %v (%s), want %v", name, got.Reason, got.Message, tc.want)
		}
		if h.businessDigest() != before {
			t.Errorf("%s: a refusal changed the state", name)
		}
	}
	def := threeCards()
	def.CampaignId = "cc"
	h.mustOK(defineCards(def))
	if got := h.one(defineCards(def)); got.Reason != ReasonAlreadyExists {
		t.Errorf("defined twice: %v", got.Reason)
	}
	h.mustOK(grantDraws("cc", "u", 1))
	if got := h.one(drawCard("cc", "u", 1)); got.Reason != ReasonCampaignClosed {
		t.Errorf("draw in a draft: %v", got.Reason)
	}
	h.mustOK(openCampaign("cc"))
	h.mustOK(drawCard("cc", "u", 1))
	if got := h.one(drawCard("cc", "u", 1)); got.Reason != ReasonNoDrawsLeft {
		t.Errorf("draw without a chance: %v", got.Reason)
	}
	if got := h.one(drawCard("c", "u", 1)); got.Reason != ReasonWrongCampaignKind {
		t.Errorf("draw in a flash sale: %v", got.Reason)
	}
	if got := h.one(redeemSet("cc", "nobody")); got.Reason != ReasonNoFullSet {
		t.Errorf("redeem without a set: %v", got.Reason)
	}
}

// TestDrawsFollowWeights draws 30,000 cards at a fixed seed and compares
// the counts with the weights by a chi-square test (2 degrees of freedom:
// 13.8 is the 0.1% critical value; the bound is wider still).
func TestDrawsFollowWeights(t *testing.T) {
	h := newHarness(t)
	h.openCards(threeCards())
	const draws = 30000
	rng := rand.New(rand.NewPCG(6, 11))
	for u := range draws / grantDrawsMax {
		user := fmt.Sprint("u", u)
		h.mustOK(grantDraws("cc", user, grantDrawsMax))
		for range grantDrawsMax {
			h.mustOK(drawCard("cc", user, rng.Uint64()))
		}
	}
	cc, _ := h.f.CardCollect("cc")
	chi2 := 0.0
	for _, tp := range cc.Types {
		want := float64(draws) * float64(tp.Weight) / 10
		d := float64(tp.Issued) - want
		chi2 += d * d / want
		t.Logf("type %s: %d drawn, %.0f expected", tp.ID, tp.Issued, want)
	}
	if chi2 > 20 {
		t.Fatalf("chi-square %.2f: draws do not follow the weights", chi2)
	}
	t.Logf("chi-square %.2f", chi2)
}

func TestCapsAreNeverExceeded(t *testing.T) {
	h := newHarness(t)
	h.openCards(&fsmpb.DefineCards{
		Types:    []*fsmpb.CardType{{TypeId: "rare", Weight: 100, Cap: 5}, {TypeId: "common", Weight: 1, Cap: 40}},
		SetTypes: []string{"rare", "common"}, RewardPool: 1,
	})
	h.mustOK(grantDraws("cc", "u", 100))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 45 {
		res := h.mustOK(drawCard("cc", "u", rng.Uint64()))
		if i < 5 && res.CardType != "rare" {
			t.Logf("draw %d: %s before the rare cards ran out", i, res.CardType)
		}
	}
	got := h.one(drawCard("cc", "u", rng.Uint64()))
	if got.Reason != ReasonSoldOut {
		t.Fatalf("draw with every type at its cap: %v", got.Reason)
	}
	cc, _ := h.f.CardCollect("cc")
	if cc.Types[0].Issued != 5 || cc.Types[1].Issued != 40 {
		t.Fatalf("issued %+v, want the caps", cc.Types)
	}
	if hd := h.holder("u"); hd.DrawsLeft != 55 {
		t.Fatalf("draws left %d: a refused draw spent a chance", hd.DrawsLeft)
	}
}

func TestGrantAndDrawAreIdempotent(t *testing.T) {
	h := newHarness(t)
	def := threeCards()
	def.DrawsPerUserMax = 3
	h.openCards(def)
	for range 2 {
		res := h.mustOK(withRequestID("grant-1", grantDraws("cc", "u", 2)))
		if res.Holder.DrawsGranted != 2 {
			t.Fatalf("granted %d after a repeated grant, want 2", res.Holder.DrawsGranted)
		}
	}
	if got := h.one(withRequestID("grant-1", grantDraws("cc", "u", 1))); got.Reason != ReasonRequestIDReused {
		t.Fatalf("same ID, other count: %v", got.Reason)
	}
	if got := h.one(grantDraws("cc", "u", 2)); got.Reason != ReasonLimitReached {
		t.Fatalf("grant above the maximum: %v", got.Reason)
	}
	first := h.mustOK(withRequestID("draw-1", drawCard("cc", "u", 42)))
	again := h.mustOK(withRequestID("draw-1", drawCard("cc", "u", 7)))
	if again.CardType != first.CardType || again.Holder.DrawsLeft != 1 {
		t.Fatalf("repeated draw: %q with %d left, want %q with 1", again.CardType, again.Holder.DrawsLeft, first.CardType)
	}
}

func TestRedemptionsNeverExceedThePool(t *testing.T) {
	h := newHarness(t)
	h.openCards(threeCards()) // pool 3
	rng := rand.New(rand.NewPCG(3, 4))
	for u := range 5 {
		h.giveSets(fmt.Sprint("u", u), 1, rng)
	}
	var rewards []uint64
	for u := range 5 {
		res := h.apply(withRequestID(fmt.Sprint("redeem-", u), redeemSet("cc", fmt.Sprint("u", u))))
		switch r := res.Outcomes[0].Reason; {
		case r == ReasonOK:
			rewards = append(rewards, res.Reward)
		case r != ReasonPoolEmpty || u < 3:
			t.Fatalf("redeem %d: %v", u, r)
		}
	}
	if fmt.Sprint(rewards) != "[1 2 3]" {
		t.Fatalf("rewards %v, want [1 2 3]", rewards)
	}
	if res := h.mustOK(withRequestID("redeem-1", redeemSet("cc", "u1"))); res.Reward != 2 {
		t.Fatalf("repeated redemption answered reward %d, want 2", res.Reward)
	}
	if hd := h.holder("u0"); hd.FullSets != 0 || hd.Rewards != 1 {
		t.Fatalf("u0 after redeeming: %+v", hd)
	}
}

func TestCloseAndSplit(t *testing.T) {
	h := newHarness(t)
	def := threeCards()
	def.PotCents = 1001
	h.openCards(def)
	rng := rand.New(rand.NewPCG(5, 6))
	h.giveSets("carol", 1, rng)
	h.giveSets("alice", 2, rng) // one share however many sets
	h.giveSets("bob", 1, rng)
	h.giveSets("dave", 1, rng)
	h.mustOK(redeemSet("cc", "dave")) // no full set left at close
	h.mustOK(grantDraws("cc", "erin", 1))
	res := h.mustOK(closeAndSplit("cc"))
	// 1001 = 3 x 333 + 2: the two remainder cents go to alice and bob, the
	// first holders in user ID order.
	want := []Payout{{"alice", 334}, {"bob", 334}, {"carol", 333}}
	if fmt.Sprint(res.Cards.Payouts) != fmt.Sprint(want) {
		t.Fatalf("payouts %v, want %v", res.Cards.Payouts, want)
	}
	if res.Campaign.State != StateClosed {
		t.Fatalf("campaign %v after the split", res.Campaign.State)
	}
	again := h.mustOK(closeAndSplit("cc"))
	if fmt.Sprint(again.Cards.Payouts) != fmt.Sprint(want) {
		t.Fatalf("second split %v", again.Cards.Payouts)
	}
	for _, cmd := range []*fsmpb.Command{drawCard("cc", "erin", 1), redeemSet("cc", "alice"), grantDraws("cc", "erin", 1)} {
		if got := h.one(cmd); got.Reason != ReasonCampaignClosed {
			t.Errorf("%v after the split: %v", cmd.GetType(), got.Reason)
		}
	}
}

func TestSplitRemainderRule(t *testing.T) {
	for _, tc := range []struct {
		pot     uint64
		holders int
	}{{0, 3}, {1, 3}, {2, 3}, {99, 7}, {100, 1}, {1 << 40, 13}} {
		cc := &cardCollect{types: []cardType{{id: "a", weight: 1}}, setTypes: []int{0}, potCents: tc.pot, holders: map[string]*cardHolder{}}
		for i := range tc.holders {
			cc.holders[fmt.Sprintf("user-%02d", tc.holders-i)] = &cardHolder{cards: []uint64{1}}
		}
		cc.holders["none"] = &cardHolder{cards: []uint64{0}}
		payouts := splitPot(cc)
		var sum uint64
		for i, p := range payouts {
			sum += p.Cents
			share := tc.pot / uint64(tc.holders)
			if extra := uint64(i) < tc.pot%uint64(tc.holders); p.Cents != share+map[bool]uint64{true: 1}[extra] {
				t.Errorf("pot %d: payout %d (%s) is %d", tc.pot, i, p.UserID, p.Cents)
			}
			if i > 0 && payouts[i-1].UserID >= p.UserID {
				t.Errorf("pot %d: payouts not in user order", tc.pot)
			}
		}
		if len(payouts) != tc.holders || sum != tc.pot {
			t.Errorf("pot %d among %d: %d payouts summing to %d", tc.pot, tc.holders, len(payouts), sum)
		}
	}
}

func TestCardsSnapshotAndDigest(t *testing.T) {
	build := func() *harness {
		h := newHarness(t)
		h.openSale(10)
		h.openCards(threeCards())
		rng := rand.New(rand.NewPCG(7, 8))
		h.giveSets("alice", 1, rng)
		h.giveSets("bob", 2, rng)
		h.mustOK(withRequestID("redeem", redeemSet("cc", "bob")))
		h.mustOK(grantDraws("cc", "carol", 2))
		h.mustOK(withRequestID("draw", withSeed(99, drawCard("cc", "carol", 0))))
		h.mustClaim(claimReq("u", 1))
		h.mustClaim(claimReq("v", 1))
		h.mustOK(leaseClaims("g", "w", 1, time.Minute))
		return h
	}
	h := build()
	data := persist(t, h.f)
	f := restored(t, data, Config{})
	if got, want := f.Digest(); got != h.digest() || want != h.index {
		t.Fatalf("restored digest %s at %d, want %s", got, want, h.digest())
	}
	wantCC, _ := h.f.CardCollect("cc")
	gotCC, _ := f.CardCollect("cc")
	if fmt.Sprint(gotCC) != fmt.Sprint(wantCC) || fmt.Sprint(f.SettlementFeeds()) != fmt.Sprint(h.f.SettlementFeeds()) {
		t.Fatalf("restored cards %+v, want %+v", gotCC, wantCC)
	}
	// Both go on the same way, replays included.
	other := &harness{t: t, f: f, index: h.index, now: h.now}
	for _, x := range []*harness{h, other} {
		if res := x.mustOK(withRequestID("redeem", redeemSet("cc", "bob"))); res.Reward != 1 {
			t.Fatalf("replayed redemption: reward %d", res.Reward)
		}
		x.mustOK(leaseClaims("g", "w2", 5, time.Minute))
		x.mustOK(closeAndSplit("cc"))
	}
	if h.digest() != other.digest() {
		t.Fatal("original and restored FSMs diverged")
	}
	if again := persist(t, f); len(again) == 0 {
		t.Fatal("empty snapshot")
	}
	// Every kind of card and feed state is in the digest.
	base := build().digest()
	seen := map[string]string{base: "base"}
	for name, change := range map[string]func(h *harness){
		"grant":  func(h *harness) { h.mustOK(grantDraws("cc", "dora", 1)) },
		"draw":   func(h *harness) { h.mustOK(drawCard("cc", "carol", 1)) },
		"redeem": func(h *harness) { h.mustOK(redeemSet("cc", "alice")) },
		"split":  func(h *harness) { h.mustOK(closeAndSplit("cc")) },
		"lease":  func(h *harness) { h.mustOK(leaseClaims("g", "w", 1, time.Minute)) },
		"group":  func(h *harness) { h.mustOK(leaseClaims("g2", "w", 1, time.Minute)) },
	} {
		x := build()
		change(x)
		if other, dup := seen[x.digest()]; dup {
			t.Errorf("the %s leaves the digest of %s", name, other)
		}
		seen[x.digest()] = name
	}
}

func withSeed(seed uint64, cmd *fsmpb.Command) *fsmpb.Command {
	cmd.Seed = seed
	return cmd
}

// TestFullSetHolders: the pot is split among the users holding a full set,
// not among every user with draws or cards; the view counts both, as the
// draws and redemptions change them, and after a restore.
func TestFullSetHolders(t *testing.T) {
	h := newHarness(t)
	h.openCards(threeCards())
	rng := rand.New(rand.NewPCG(3, 4))
	counts := func(x *harness) string {
		cc, _ := x.f.CardCollect("cc")
		return fmt.Sprintf("%d holders, %d with a full set", cc.Holders, cc.FullSetHolders)
	}
	h.mustOK(grantDraws("cc", "carol", 2)) // draws, no card yet
	h.mustOK(drawCard("cc", "carol", 1))
	h.giveSets("alice", 1, rng)
	h.mustOK(grantDraws("cc", "bob", 1))
	if got := counts(h); got != "3 holders, 1 with a full set" {
		t.Fatalf("%s, want 3 holders, 1 with a full set", got)
	}
	h.giveSets("bob", 2, rng)
	if got := counts(h); got != "3 holders, 2 with a full set" {
		t.Fatalf("after bob's sets: %s", got)
	}
	h.mustOK(redeemSet("cc", "alice")) // her only set
	if got := counts(h); got != "3 holders, 1 with a full set" {
		t.Fatalf("after alice redeemed her set: %s", got)
	}
	r := &harness{t: t, f: restored(t, persist(t, h.f), Config{}), index: h.index, now: h.now}
	if got := counts(r); got != counts(h) {
		t.Fatalf("restored: %s, want %s", got, counts(h))
	}
	res := h.mustOK(closeAndSplit("cc"))
	if len(res.Cards.Payouts) != int(res.Cards.FullSetHolders) || res.Cards.FullSetHolders != 1 {
		t.Fatalf("split among %d, %d with a full set", len(res.Cards.Payouts), res.Cards.FullSetHolders)
	}
}
