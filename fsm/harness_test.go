package fsm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/hashicorp/raft"
)

// t0 is the time tests start at; campaigns created by the harness open then.
var t0 = time.Date(2025, 11, 11, 0, 0, 0, 0, time.UTC).UnixNano()

// harness feeds commands to an FSM the way raft would, with a clock the test
// moves by hand, and the invariant check on.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
	now   int64
}

func newHarness(t testing.TB) *harness {
	return newHarnessWith(t, Config{})
}

func newHarnessWith(t testing.TB, cfg Config) *harness {
	t.Helper()
	cfg.CheckInvariants = true
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &harness{t: t, f: f, now: t0}
	// The state machine's clock is state: start it at t0, so that the
	// first command a test checks does not change it.
	h.mustOK(expire())
	return h
}

// entry encodes cmd, stamped with the harness clock, as the next log entry.
func (h *harness) entry(cmd *fsmpb.Command) *raft.Log {
	h.t.Helper()
	cmd.TimeUnixNano = h.now
	data, err := EncodeCommand(cmd)
	if err != nil {
		h.t.Fatalf("EncodeCommand(%v): %v", cmd, err)
	}
	h.index++
	return &raft.Log{Index: h.index, Type: raft.LogCommand, Data: data}
}

func (h *harness) apply(cmd *fsmpb.Command) *Result {
	h.t.Helper()
	res, ok := h.f.Apply(h.entry(cmd)).(*Result)
	if !ok {
		h.t.Fatalf("Apply did not return a *Result")
	}
	return res
}

// one applies a single-operation command and returns its only outcome.
func (h *harness) one(cmd *fsmpb.Command) Outcome {
	h.t.Helper()
	res := h.apply(cmd)
	if len(res.Outcomes) != 1 {
		h.t.Fatalf("%v: %d outcomes, want 1", cmd.GetType(), len(res.Outcomes))
	}
	return res.Outcomes[0]
}

// mustOK applies cmd and fails the test unless it succeeds.
func (h *harness) mustOK(cmd *fsmpb.Command) *Result {
	h.t.Helper()
	res := h.apply(cmd)
	if r := res.Outcomes[0].Reason; r != ReasonOK {
		h.t.Fatalf("%v: %v (%s), want OK", cmd.GetType(), r, res.Outcomes[0].Message)
	}
	return res
}

func (h *harness) claims(reqs ...*fsmpb.ClaimRequest) []Outcome {
	h.t.Helper()
	res := h.apply(claimBatch(reqs...))
	if len(res.Outcomes) != len(reqs) {
		h.t.Fatalf("claim batch of %d: %d outcomes", len(reqs), len(res.Outcomes))
	}
	return res.Outcomes
}

func (h *harness) claim(req *fsmpb.ClaimRequest) Outcome {
	h.t.Helper()
	return h.claims(req)[0]
}

// mustClaim claims and fails the test unless the claim is granted.
func (h *harness) mustClaim(req *fsmpb.ClaimRequest) Claim {
	h.t.Helper()
	out := h.claim(req)
	if out.Reason != ReasonOK {
		h.t.Fatalf("claim %v: %v (%s)", req, out.Reason, out.Message)
	}
	return out.Claim
}

// openSale creates an open flash sale "c" from t0 with item "i" holding
// stock, and the given campaign options.
func (h *harness) openSale(stock uint64, opts ...func(*fsmpb.CreateCampaign)) {
	h.t.Helper()
	create := &fsmpb.CreateCampaign{CampaignId: "c", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "sale", StartUnixNano: t0}
	for _, o := range opts {
		o(create)
	}
	h.mustOK(createCampaign(create))
	h.mustOK(openCampaign("c"))
	h.mustOK(addItem("c", "i", stock, 0))
}

// businessDigest hashes the state but the idempotency records: a refused
// claim must leave it as it was, while it does add its own record.
func (h *harness) businessDigest() string {
	h.f.mu.Lock()
	v := h.f.s.view()
	h.f.mu.Unlock()
	return v.digest(false)
}

func (h *harness) digest() string {
	d, _ := h.f.Digest()
	return d
}

func (h *harness) item(campaignID, itemID string) Item {
	h.t.Helper()
	it, ok := h.f.Item(campaignID, itemID)
	if !ok {
		h.t.Fatalf("item %s/%s not found", campaignID, itemID)
	}
	return it
}

// Command builders.

func createCampaign(b *fsmpb.CreateCampaign) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN, CreateCampaign: b}
}

func updateCampaign(b *fsmpb.UpdateCampaign) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN, UpdateCampaign: b}
}

func setState(id string, st fsmpb.CampaignState) *fsmpb.Command {
	return updateCampaign(&fsmpb.UpdateCampaign{CampaignId: id, State: &st})
}

func openCampaign(id string) *fsmpb.Command {
	return setState(id, fsmpb.CampaignState_CAMPAIGN_STATE_OPEN)
}

func addItem(campaignID, itemID string, stock uint64, limit uint32) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM, AddItem: &fsmpb.AddItem{
		CampaignId: campaignID, ItemId: itemID, Stock: stock, PerUserLimit: limit,
	}}
}

func adjustStock(campaignID, itemID string, delta int64) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ADJUST_STOCK, AdjustStock: &fsmpb.AdjustStock{
		CampaignId: campaignID, ItemId: itemID, Delta: delta,
	}}
}

func claimBatch(reqs ...*fsmpb.ClaimRequest) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH, ClaimBatch: &fsmpb.ClaimBatch{Claims: reqs}}
}

// claimReq is a claim of quantity 1 on c/i by user, with request ID
// "req-<user>-<n>".
func claimReq(user string, n int) *fsmpb.ClaimRequest {
	return &fsmpb.ClaimRequest{RequestId: fmt.Sprintf("req-%s-%d", user, n), CampaignId: "c", ItemId: "i", UserId: user, Quantity: 1}
}

func settle(id uint64) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_SETTLE, Settle: &fsmpb.Settle{ClaimId: id}}
}

func release(id uint64) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_RELEASE, Release: &fsmpb.Release{ClaimId: id}}
}

func markOrdering(id uint64) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_MARK_ORDERING, MarkOrdering: &fsmpb.MarkOrdering{ClaimId: id}}
}

func markCancelling(id uint64) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_MARK_CANCELLING, MarkCancelling: &fsmpb.MarkCancelling{ClaimId: id}}
}

func expire() *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE, Expire: &fsmpb.Expire{}}
}

func registerNode(b *fsmpb.RegisterNode) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_REGISTER_NODE, RegisterNode: b}
}

func setFrontDoor(c *fsmpb.FrontDoorConfig) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_SET_FRONT_DOOR_CONFIG, SetFrontDoorConfig: &fsmpb.SetFrontDoorConfig{Config: c}}
}

func withRequestID(id string, cmd *fsmpb.Command) *fsmpb.Command {
	cmd.RequestId = id
	return cmd
}

// mustPanic runs fn and fails the test unless it panics with a message
// containing want.
func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("did not panic, want a panic about %q", want)
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
			t.Fatalf("panic %q, want one about %q", msg, want)
		}
	}()
	fn()
}
