package fsm

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/hashicorp/raft"
)

func drawCardBatch(seed uint64, draws ...*fsmpb.DrawCardBatchEntry) *fsmpb.Command {
	return &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD_BATCH, Seed: seed,
		DrawCardBatch: &fsmpb.DrawCardBatch{Draws: draws},
	}
}

func drawEntry(requestID, campaignID, user string) *fsmpb.DrawCardBatchEntry {
	return &fsmpb.DrawCardBatchEntry{RequestId: requestID, CampaignId: campaignID, UserId: user}
}

// draws applies a draw batch and checks it answers one result per draw.
func (h *harness) draws(seed uint64, entries ...*fsmpb.DrawCardBatchEntry) *Result {
	h.t.Helper()
	res := h.apply(drawCardBatch(seed, entries...))
	if len(res.Outcomes) != len(entries) || len(res.Draws) != len(entries) {
		h.t.Fatalf("draw batch of %d: %d outcomes, %d draws", len(entries), len(res.Outcomes), len(res.Draws))
	}
	for i, d := range res.Draws {
		if len(d.Outcomes) != 1 || d.Outcomes[0] != res.Outcomes[i] {
			h.t.Fatalf("draw %d: outcomes %v, batch outcome %v", i, d.Outcomes, res.Outcomes[i])
		}
	}
	return res
}

func TestDrawBatchRefusalsAndReplays(t *testing.T) {
	h := newHarness(t)
	h.openSale(1)
	h.openCards(&fsmpb.DefineCards{
		Types:    []*fsmpb.CardType{{TypeId: "a", Weight: 1}, {TypeId: "b", Weight: 1}},
		SetTypes: []string{"a", "b"}, RewardPool: 1,
	})
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "shut", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, StartUnixNano: t0}))
	h.mustOK(defineCards(&fsmpb.DefineCards{CampaignId: "shut", Types: []*fsmpb.CardType{{TypeId: "a", Weight: 1}}, SetTypes: []string{"a"}}))
	h.mustOK(grantDraws("cc", "one", 1))
	h.mustOK(grantDraws("cc", "two", 2))

	res := h.draws(99,
		drawEntry("d1", "cc", "one"),    // granted
		drawEntry("d2", "cc", "one"),    // its only chance is spent
		drawEntry("d1", "cc", "one"),    // a retry inside the batch: the first card
		drawEntry("d1", "cc", "two"),    // the ID again, for another user
		drawEntry("d3", "cc", "nobody"), // never granted a draw
		drawEntry("d4", "shut", "two"),  // a draft
		drawEntry("d5", "c", "two"),     // a flash sale
		drawEntry("d6", "none", "two"),  // no such campaign
		drawEntry("d7", "cc", ""),       // no user
		drawEntry("", "cc", "two"),      // no request ID: applied, not recorded
		drawEntry("d8", "cc", "two"),    // granted
		drawEntry("d9", "cc", "two"),    // both spent
	)
	want := []Reason{
		ReasonOK, ReasonNoDrawsLeft, ReasonOK, ReasonRequestIDReused, ReasonNoDrawsLeft, ReasonCampaignClosed,
		ReasonWrongCampaignKind, ReasonCampaignNotFound, ReasonInvalidArgument, ReasonOK, ReasonOK, ReasonNoDrawsLeft,
	}
	for i, o := range res.Outcomes {
		if o.Reason != want[i] {
			t.Errorf("draw %d: %v (%s), want %v", i, o.Reason, o.Message, want[i])
		}
	}
	if first, retry := res.Draws[0], res.Draws[2]; retry.CardType != first.CardType || retry.Holder.DrawsLeft != 0 {
		t.Errorf("retry in the batch: %q with %d left, the first %q", retry.CardType, retry.Holder.DrawsLeft, first.CardType)
	}
	if hd := h.holder("two"); hd.DrawsLeft != 0 || hd.DrawsGranted != 2 {
		t.Errorf("two: %d left of %d", hd.DrawsLeft, hd.DrawsGranted)
	}
	if d := res.Draws[10]; d.Holder == nil || d.Holder.UserID != "two" || d.Holder.DrawsLeft != 0 || d.CardType == "" {
		t.Errorf("a granted draw's result: %+v", d)
	}

	// Each draw is idempotent on its own, whatever carries it next.
	before := h.digest()
	again := h.apply(withRequestID("d8", drawCard("cc", "two", 1)))
	if again.Outcomes[0].Reason != ReasonOK || again.CardType != res.Draws[10].CardType {
		t.Errorf("a batch draw retried alone: %v %q, first %q", again.Outcomes[0].Reason, again.CardType, res.Draws[10].CardType)
	}
	if got := h.draws(5, drawEntry("d9", "cc", "two")).Outcomes[0]; got.Reason != ReasonNoDrawsLeft || got.Message != msgRepeated {
		t.Errorf("a refused batch draw retried: %v (%s)", got.Reason, got.Message)
	}
	if h.digest() != before {
		t.Error("retries changed the state")
	}

	// With every type at its cap, a draw is refused and spends nothing.
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "capped", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, StartUnixNano: t0}))
	h.mustOK(defineCards(&fsmpb.DefineCards{CampaignId: "capped", Types: []*fsmpb.CardType{{TypeId: "r", Weight: 1, Cap: 1}}, SetTypes: []string{"r"}}))
	h.mustOK(openCampaign("capped"))
	h.mustOK(grantDraws("capped", "u", 3))
	res = h.draws(7, drawEntry("c1", "capped", "u"), drawEntry("c2", "capped", "u"))
	if res.Outcomes[0].Reason != ReasonOK || res.Outcomes[1].Reason != ReasonSoldOut {
		t.Errorf("capped: %v, %v", res.Outcomes[0].Reason, res.Outcomes[1].Reason)
	}
	if hd, _ := h.f.CardHolder("capped", "u"); hd.DrawsLeft != 2 {
		t.Errorf("capped: %d draws left, want 2", hd.DrawsLeft)
	}

	// After the split, nothing is drawn.
	h.mustOK(grantDraws("cc", "three", 1))
	h.mustOK(closeAndSplit("cc"))
	if got := h.draws(8, drawEntry("x1", "cc", "three")).Outcomes[0]; got.Reason != ReasonCampaignClosed {
		t.Errorf("after the split: %v", got.Reason)
	}
}

func TestDrawBatchTooLargeAppliesNothing(t *testing.T) {
	h := newHarness(t)
	h.openCards(threeCards())
	h.mustOK(grantDraws("cc", "u", 1))
	entries := make([]*fsmpb.DrawCardBatchEntry, drawsPerBatchMax+1)
	for i := range entries {
		entries[i] = drawEntry(fmt.Sprint("r", i), "cc", "u")
	}
	before := h.digest()
	for i, o := range h.draws(1, entries...).Outcomes {
		if o.Reason != ReasonInvalidArgument {
			t.Fatalf("draw %d of an oversized batch: %v", i, o.Reason)
		}
	}
	if h.digest() != before {
		t.Fatal("an oversized batch changed the state")
	}
}

func TestDrawSeedsAreASplitMixSequence(t *testing.T) {
	// The first draw of a batch uses the command's seed, so a batch of one
	// is a DRAW_CARD; the others step by SplitMix64's increment.
	step := uint64(0x9e3779b97f4a7c15)
	if drawSeed(12345, 0) != 12345 || drawSeed(12345, 2) != 12345+2*step {
		t.Fatal("the seed derivation changed: it is part of the log's meaning")
	}
	if drawSeed(^uint64(0), 1) != 0x9e3779b97f4a7c15-1 {
		t.Fatal("the seed derivation does not wrap mod 2^64")
	}
}

// cardsLog is a random mix of grants, draw batches (with retries and
// reused request IDs) and redemptions on two card campaigns, one with a
// capped rare type, over a few users, times moving on.
type cardsLog struct {
	rng    *rand.Rand
	now    int64
	sent   []*fsmpb.DrawCardBatchEntry
	nextID int
}

func (g *cardsLog) entry() *fsmpb.DrawCardBatchEntry {
	switch p := g.rng.IntN(10); {
	case p == 0 && len(g.sent) > 0:
		return g.sent[g.rng.IntN(len(g.sent))]
	case p == 1 && len(g.sent) > 0:
		old := g.sent[g.rng.IntN(len(g.sent))]
		return drawEntry(old.RequestId, old.CampaignId, fmt.Sprint("u", g.rng.IntN(6)))
	}
	g.nextID++
	e := drawEntry(fmt.Sprint("d", g.nextID), fmt.Sprint("k", g.rng.IntN(2)), fmt.Sprint("u", g.rng.IntN(6)))
	g.sent = append(g.sent, e)
	return e
}

func (g *cardsLog) next() *fsmpb.Command {
	g.now += g.rng.Int64N(int64(time.Second))
	var cmd *fsmpb.Command
	switch p := g.rng.IntN(10); {
	case p < 2:
		cmd = grantDraws(fmt.Sprint("k", g.rng.IntN(2)), fmt.Sprint("u", g.rng.IntN(6)), 1+g.rng.Uint32N(4))
	case p < 3:
		cmd = redeemSet(fmt.Sprint("k", g.rng.IntN(2)), fmt.Sprint("u", g.rng.IntN(6)))
	default:
		var entries []*fsmpb.DrawCardBatchEntry
		for range 1 + g.rng.IntN(12) {
			entries = append(entries, g.entry())
		}
		cmd = drawCardBatch(g.rng.Uint64(), entries...)
	}
	cmd.TimeUnixNano = g.now
	return cmd
}

// openCardCampaigns opens k0 and k1, k1 with a rare type capped at 3.
func (h *harness) openCardCampaigns() {
	h.t.Helper()
	for k, def := range []*fsmpb.DefineCards{threeCards(), {
		Types:    []*fsmpb.CardType{{TypeId: "rare", Weight: 5, Cap: 3}, {TypeId: "common", Weight: 1}},
		SetTypes: []string{"rare", "common"}, RewardPool: 2, DrawsPerUserMax: 20,
	}} {
		id := fmt.Sprint("k", k)
		h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: id, Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, StartUnixNano: t0}))
		def.CampaignId = id
		h.mustOK(defineCards(def))
		h.mustOK(openCampaign(id))
	}
}

// singles is a draw batch as the DRAW_CARD commands it stands for, with
// the batch's time and each draw's seed.
func singles(batch *fsmpb.Command) []*fsmpb.Command {
	var out []*fsmpb.Command
	for i, d := range batch.GetDrawCardBatch().GetDraws() {
		cmd := withRequestID(d.GetRequestId(), drawCard(d.GetCampaignId(), d.GetUserId(), drawSeed(batch.GetSeed(), i)))
		cmd.TimeUnixNano = batch.GetTimeUnixNano()
		out = append(out, cmd)
	}
	return out
}

// TestDrawBatchIsTheDrawsOneByOne applies a random log of draw batches to
// one state machine and the same draws, as DRAW_CARD commands with the
// derived seeds, to another: every draw must get the same result, and the
// states must end the same (idempotency records included).
func TestDrawBatchIsTheDrawsOneByOne(t *testing.T) {
	batched, oneByOne := newHarness(t), newHarness(t)
	for _, h := range []*harness{batched, oneByOne} {
		h.openCardCampaigns()
	}
	g := &cardsLog{rng: rand.New(rand.NewPCG(3, 4)), now: t0}
	drawn, refused := 0, 0
	for range 600 {
		cmd := g.next()
		if cmd.GetType() != fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD_BATCH {
			for _, h := range []*harness{batched, oneByOne} {
				h.now = cmd.TimeUnixNano
				h.apply(cmd)
			}
			continue
		}
		batched.now, oneByOne.now = cmd.TimeUnixNano, cmd.TimeUnixNano
		res := batched.draws(cmd.GetSeed(), cmd.GetDrawCardBatch().GetDraws()...)
		for i, single := range singles(cmd) {
			want := oneByOne.apply(single)
			want.detail = 0 // kept in the idempotency record, not part of the answer
			got := *res.Draws[i]
			got.detail = 0
			if !reflect.DeepEqual(&got, want) {
				t.Fatalf("draw %d of a batch: %+v, one by one %+v", i, got, want)
			}
			if want.Outcomes[0].Reason == ReasonOK {
				drawn++
			} else {
				refused++
			}
		}
	}
	if batched.digest() != oneByOne.digest() {
		t.Fatal("the batches and the draws one by one left different states")
	}
	if drawn < 200 || refused < 100 {
		t.Fatalf("the log drew %d and refused %d: too few to tell", drawn, refused)
	}
	t.Logf("%d draws, %d refusals", drawn, refused)
}

// TestDrawBatchesAreDeterministic applies one random log entry by entry,
// in raft batches, and from the middle on to a state restored from a
// snapshot: all three end with the same digest, and the restored state
// answers retries of batched draws as the original does.
func TestDrawBatchesAreDeterministic(t *testing.T) {
	g := &cardsLog{rng: rand.New(rand.NewPCG(8, 9)), now: t0}
	one := newHarness(t)
	one.openCardCampaigns()
	setup := one.index
	var log []*raft.Log
	for range 400 {
		cmd := g.next()
		one.now = cmd.TimeUnixNano
		log = append(log, one.entry(cmd))
	}

	entryByEntry := newHarness(t)
	entryByEntry.openCardCampaigns()
	inBatches := newHarness(t)
	inBatches.openCardCampaigns()
	var restoredFrom *harness
	for i := 0; i < len(log); {
		n := min(1+i%7, len(log)-i)
		inBatches.f.ApplyBatch(log[i : i+n])
		for _, l := range log[i : i+n] {
			entryByEntry.f.Apply(l)
		}
		i += n
		if restoredFrom == nil && i >= len(log)/2 {
			restoredFrom = &harness{t: t, f: restored(t, persist(t, entryByEntry.f), Config{CheckInvariants: true}), now: g.now}
			if restoredFrom.digest() != entryByEntry.digest() {
				t.Fatal("the snapshot of a state with draw batches does not restore it")
			}
			for _, l := range log[i:] {
				restoredFrom.f.Apply(l)
			}
		}
	}
	want := entryByEntry.digest()
	if inBatches.digest() != want || restoredFrom.digest() != want {
		t.Fatal("the same log of draw batches left different states")
	}
	// Retries of the log's draws, on the original and the restored state.
	retries := drawCardBatch(1, g.sent[:20]...)
	for _, h := range []*harness{entryByEntry, restoredFrom} {
		h.now = g.now
		h.index = setup + uint64(len(log))
	}
	before := entryByEntry.businessDigest()
	a, b := entryByEntry.draws(1, retries.GetDrawCardBatch().GetDraws()...), restoredFrom.draws(1, retries.GetDrawCardBatch().GetDraws()...)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("retries after a restore answer differently:\n%+v\n%+v", a, b)
	}
	if entryByEntry.businessDigest() != before || restoredFrom.digest() != entryByEntry.digest() {
		t.Fatal("retries of applied draws were applied anew")
	}
}

// BenchmarkApplyDraws applies 256 draws from 256 users as one
// DRAW_CARD_BATCH entry (batch) or as 256 DRAW_CARD entries (single), the
// entries encoded ahead with the timer stopped; it reports the state
// machine's time per draw. It leaves out what an entry costs outside the
// state machine (the log write and its fsync, replication), which is what
// batching draws saves most.
func BenchmarkApplyDraws(b *testing.B) {
	const draws = 256
	for _, batched := range []bool{true, false} {
		name := "single"
		if batched {
			name = "batch"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarnessWith(b, Config{})
			h.f.cfg.CheckInvariants = false
			h.openCards(threeCards())
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				for u := range draws { // every user draws once an iteration
					h.mustOK(grantDraws("cc", fmt.Sprint("u", u), 1))
				}
				var logs []*raft.Log
				entries := make([]*fsmpb.DrawCardBatchEntry, draws)
				for u := range entries {
					entries[u] = drawEntry(fmt.Sprint("d", i, "-", u), "cc", fmt.Sprint("u", u))
				}
				if batched {
					logs = append(logs, h.entry(drawCardBatch(uint64(i), entries...)))
				} else {
					for _, cmd := range singles(drawCardBatch(uint64(i), entries...)) {
						logs = append(logs, h.entry(cmd))
					}
				}
				b.StartTimer()
				for _, l := range logs {
					h.f.Apply(l)
				}
			}
			b.StopTimer()
			var issued uint64
			cc, _ := h.f.CardCollect("cc")
			for _, t := range cc.Types {
				issued += t.Issued
			}
			if issued != uint64(b.N*draws) {
				b.Fatalf("%d cards issued for %d draws", issued, b.N*draws)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*draws), "ns/draw")
		})
	}
}
