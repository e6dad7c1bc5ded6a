package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/hashicorp/raft"
)

// commandGenerator makes a random but reproducible mix of every command,
// over few enough campaigns, items, users and request IDs that they collide.
type commandGenerator struct {
	rng      *rand.Rand
	now      int64
	requests []*fsmpb.ClaimRequest // claims sent so far, for retries
	nextID   int
	claims   uint64   // claims granted so far, as the test tells
	marked   []uint64 // claim IDs marked as ordering so far
}

func (g *commandGenerator) pick(prefix string, n int) string {
	return fmt.Sprint(prefix, g.rng.IntN(n))
}

func (g *commandGenerator) next() *fsmpb.Command {
	g.now += g.rng.Int64N(int64(20 * time.Second))
	var cmd *fsmpb.Command
	switch p := g.rng.IntN(100); {
	case p < 50:
		cmd = g.claimBatch()
	case p < 56:
		cmd = settle(g.markedID())
	case p < 62:
		cmd = release(g.markedID())
	case p < 66:
		id := g.markedID()
		g.marked = append(g.marked, id)
		cmd = markOrdering(id)
	case p < 68:
		cmd = markCancelling(g.markedID())
	case p < 72:
		cmd = expire()
	case p < 77:
		cmd = createCampaign(&fsmpb.CreateCampaign{
			CampaignId: g.pick("c", 4), Kind: g.kind(), StartUnixNano: g.now + g.rng.Int64N(int64(time.Minute)),
			PerUserLimit: g.rng.Uint32N(3), WaveCount: g.rng.Uint32N(5), WaveIntervalNanos: g.rng.Int64N(int64(30 * time.Minute)),
			ReservationTtlNanos: g.rng.Int64N(int64(5 * time.Minute)),
		})
	case p < 82:
		state := fsmpb.CampaignState_CAMPAIGN_STATE_OPEN
		if g.rng.IntN(15) == 0 {
			state = fsmpb.CampaignState(1 + g.rng.IntN(3))
		}
		cmd = setState(g.pick("c", 4), state)
	case p < 88:
		cmd = addItem(g.pick("c", 4), g.pick("i", 3), g.rng.Uint64N(20), g.rng.Uint32N(3))
	case p < 93:
		cmd = adjustStock(g.pick("c", 4), g.pick("i", 3), g.rng.Int64N(20)-8)
	case p < 96:
		cmd = registerNode(&fsmpb.RegisterNode{NodeId: g.pick("n", 3), Region: g.pick("r", 2), Removed: g.rng.IntN(3) == 0})
	default:
		cmd = setFrontDoor(&fsmpb.FrontDoorConfig{GlobalRate: float64(g.rng.IntN(3)), DegradeLevel: g.rng.Uint32N(5)})
	}
	if cmd.ClaimBatch == nil && g.rng.IntN(3) == 0 {
		cmd.RequestId = g.pick("op", 30)
	}
	cmd.TimeUnixNano = g.now
	return cmd
}

// claimID is a claim ID that may or may not exist, most often a recent one.
func (g *commandGenerator) claimID() uint64 {
	if g.rng.IntN(4) == 0 {
		return g.rng.Uint64N(g.claims + 2)
	}
	return g.claims + 1 - min(g.claims, g.rng.Uint64N(20))
}

// markedID is, half the time, one of the last claims marked as ordering,
// else claimID's pick.
func (g *commandGenerator) markedID() uint64 {
	if n := len(g.marked); n > 0 && g.rng.IntN(2) == 0 {
		return g.marked[n-1-g.rng.IntN(min(n, 4))]
	}
	return g.claimID()
}

func (g *commandGenerator) kind() fsmpb.CampaignKind {
	if g.rng.IntN(8) == 0 {
		return fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT
	}
	return fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE
}

func (g *commandGenerator) quantity() uint32 {
	if g.rng.IntN(10) == 0 {
		return 0
	}
	return 1 + g.rng.Uint32N(2)
}

func (g *commandGenerator) claimBatch() *fsmpb.Command {
	batch := &fsmpb.ClaimBatch{}
	for range 1 + g.rng.IntN(20) {
		var req *fsmpb.ClaimRequest
		switch p := g.rng.IntN(10); {
		case p == 0 && len(g.requests) > 0: // a retry
			req = g.requests[g.rng.IntN(len(g.requests))]
		case p == 1 && len(g.requests) > 0: // a reused request ID
			old := g.requests[g.rng.IntN(len(g.requests))]
			req = &fsmpb.ClaimRequest{RequestId: old.RequestId, CampaignId: old.CampaignId, ItemId: old.ItemId, UserId: g.pick("u", 20), Quantity: 1}
		default:
			g.nextID++
			req = &fsmpb.ClaimRequest{
				RequestId: fmt.Sprint("r", g.nextID), CampaignId: g.pick("c", 4), ItemId: g.pick("i", 3),
				UserId: g.pick("u", 20), Quantity: g.quantity(),
			}
			g.requests = append(g.requests, req)
		}
		batch.Claims = append(batch.Claims, req)
	}
	return claimBatch(batch.Claims...)
}

// TestSameLogSameState feeds one random log to an FSM entry by entry, to
// another in batches of random size, and from the middle on to a third
// restored from the first's snapshot; all must end with the same digest.
func TestSameLogSameState(t *testing.T) {
	cfg := Config{IdempotencyMaxRecords: 300, IdempotencyRetention: 5 * time.Minute, CheckInvariants: true}
	gen := &commandGenerator{rng: rand.New(rand.NewPCG(7, 11)), now: t0}
	one, _ := New(cfg)
	batched, _ := New(cfg)
	var third *FSM
	var logs []*raft.Log
	reasons := make(map[Reason]int)
	for i := range 2000 {
		data, err := EncodeCommand(gen.next())
		if err != nil {
			t.Fatal(err)
		}
		l := &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data}
		logs = append(logs, l)
		for _, out := range one.Apply(l).(*Result).Outcomes {
			reasons[out.Reason]++
		}
		gen.claims = uint64(one.Stats().Claims)
		if i == 1000 {
			third = restored(t, persist(t, one), cfg)
		} else if third != nil {
			third.Apply(l)
		}
	}
	for start := 0; start < len(logs); {
		end := min(len(logs), start+1+gen.rng.IntN(64))
		batched.ApplyBatch(logs[start:end])
		start = end
	}
	want, index := one.Digest()
	for name, f := range map[string]*FSM{"batched": batched, "restored": third} {
		if got, gotIndex := f.Digest(); got != want || gotIndex != index {
			t.Errorf("%s: digest %s at %d, want %s at %d", name, got, gotIndex, want, index)
		}
	}
	t.Logf("outcomes by reason: %v", reasons)
	// The log must have exercised the paths worth comparing.
	for _, r := range append(reasonRange(ReasonOK, ReasonWrongCampaignKind), ReasonCompensating, ReasonNotCompensating) {
		if reasons[r] == 0 {
			t.Errorf("no outcome with reason %v in the random log: the generator is too narrow", r)
		}
	}
	if st := one.Stats(); st.Claims < 100 || st.IdempotencyRecords == 0 {
		t.Errorf("stats %+v: too few claims to mean much", st)
	}
}

func reasonRange(first, last Reason) []Reason {
	var out []Reason
	for r := first; r <= last; r++ {
		out = append(out, r)
	}
	return out
}

func TestDigestCoversEveryKindOfState(t *testing.T) {
	base := func() *harness {
		h := newHarness(t)
		h.openSale(5)
		return h
	}
	seen := map[string]string{base().digest(): "base"}
	for name, change := range map[string]func(h *harness){
		"campaign": func(h *harness) { h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "d", Kind: 1})) },
		"item":     func(h *harness) { h.mustOK(addItem("c", "j", 1, 0)) },
		"stock":    func(h *harness) { h.mustOK(adjustStock("c", "i", 1)) },
		"claim":    func(h *harness) { h.mustClaim(claimReq("u", 1)) },
		"ordering": func(h *harness) { h.mustClaim(claimReq("u", 1)); h.mustOK(markOrdering(1)) },
		"idempotency": func(h *harness) {
			h.claim(&fsmpb.ClaimRequest{RequestId: "x", CampaignId: "none", ItemId: "i", UserId: "u", Quantity: 1})
		},
		"node":   func(h *harness) { h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "n"})) },
		"config": func(h *harness) { h.mustOK(setFrontDoor(&fsmpb.FrontDoorConfig{})) },
		"clock":  func(h *harness) { h.now++; h.mustOK(expire()) },
	} {
		h := base()
		change(h)
		d := h.digest()
		if other, dup := seen[d]; dup {
			t.Errorf("changing the %s leaves the digest of %s", name, other)
		}
		seen[d] = name
	}
}
