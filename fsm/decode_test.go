package fsm

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// raw applies data as the next log entry without EncodeCommand's checks.
func (h *harness) raw(data []byte) any {
	h.index++
	return h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data})
}

func marshal(t *testing.T, cmd *fsmpb.Command) []byte {
	t.Helper()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestUndecodableEntriesStopTheNode(t *testing.T) {
	batch := marshal(t, claimBatch(claimReq("u", 1)))
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}, "does not decode"},
		{"unknown type", marshal(t, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_UNKNOWN, Settle: &fsmpb.Settle{ClaimId: 1}}), "unknown command type"},
		{"type from a newer version", marshal(t, &fsmpb.Command{Type: 99, Settle: &fsmpb.Settle{ClaimId: 1}}), "unknown command type"},
		{"no type at all", nil, "unknown command type"},
		{"settle without body", marshal(t, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_SETTLE}), "without its body"},
		{"claim batch without body", marshal(t, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH}), "without its body"},
		{"claim batch truncated", batch[:len(batch)-2], "does not decode"},
		{"claim truncated inside", truncateClaim(t), "does not decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.openSale(5)
			before := h.digest()
			mustPanic(t, tt.want, func() { h.raw(tt.data) })
			if h.digest() != before {
				t.Error("the entry changed the state before stopping")
			}
		})
	}
}

// truncateClaim returns a batch whose second claim's user ID field claims
// more bytes than the claim holds, while the claim's own length is right.
func truncateClaim(t *testing.T) []byte {
	good, _ := proto.Marshal(claimReq("u", 1))
	bad := protowire.AppendTag(nil, fieldClaimUserID, protowire.BytesType)
	bad = protowire.AppendVarint(bad, 50)
	bad = append(bad, "short"...)
	var body []byte
	for _, c := range [][]byte{good, bad} {
		body = protowire.AppendTag(body, fieldClaimBatchClaims, protowire.BytesType)
		body = protowire.AppendBytes(body, c)
	}
	data := marshal(t, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH})
	data = protowire.AppendTag(data, fieldCommandClaimBatch, protowire.BytesType)
	return protowire.AppendBytes(data, body)
}

func TestEncodeCommandRefusesWhatWouldStopTheNode(t *testing.T) {
	tests := []struct {
		name string
		cmd  *fsmpb.Command
		want error
	}{
		{"nil", nil, ErrMalformedCommand},
		{"unknown type", &fsmpb.Command{Expire: &fsmpb.Expire{}}, ErrUnknownCommand},
		{"newer type", &fsmpb.Command{Type: 99, Expire: &fsmpb.Expire{}}, ErrUnknownCommand},
		{"missing body", &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE}, ErrMalformedCommand},
		{"wrong body", &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE, Settle: &fsmpb.Settle{}}, ErrMalformedCommand},
		{"two bodies", &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE, Expire: &fsmpb.Expire{}, Settle: &fsmpb.Settle{}}, ErrMalformedCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := EncodeCommand(tt.cmd); !errors.Is(err, tt.want) {
				t.Fatalf("EncodeCommand: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := EncodeCommand(claimBatch(&fsmpb.ClaimRequest{UserId: "\xff"})); err == nil {
		t.Error("EncodeCommand accepted invalid UTF-8")
	}
}

// TestClaimDecoderAgreesWithProto feeds random batches, with unknown fields
// and repeated scalars mixed in, to the hand-written claim decoder and to
// proto.Unmarshal.
func TestClaimDecoderAgreesWithProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		n := rng.IntN(20)
		if rng.IntN(8) == 0 { // a length of two bytes
			n = 128 + rng.IntN(100)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return string(b)
	}
	for range 200 {
		batch := &fsmpb.ClaimBatch{}
		var body []byte
		for range rng.IntN(10) {
			c := &fsmpb.ClaimRequest{RequestId: str(), CampaignId: str(), ItemId: str(), UserId: str(), Quantity: rng.Uint32N(5)}
			raw, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
			if rng.IntN(2) == 0 { // an unknown field, then a second quantity: the last wins
				raw = protowire.AppendTag(raw, 99, protowire.BytesType)
				raw = protowire.AppendBytes(raw, []byte("future"))
				c.Quantity = rng.Uint32()
				raw = protowire.AppendTag(raw, fieldClaimQuantity, protowire.VarintType)
				raw = protowire.AppendVarint(raw, uint64(c.Quantity))
			}
			batch.Claims = append(batch.Claims, c)
			body = protowire.AppendTag(body, fieldClaimBatchClaims, protowire.BytesType)
			body = protowire.AppendBytes(body, raw)
		}
		data := marshal(t, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH, TimeUnixNano: rng.Int64(), RequestId: str()})
		data = protowire.AppendTag(data, fieldCommandClaimBatch, protowire.BytesType)
		data = protowire.AppendBytes(data, body)

		var want fsmpb.Command
		if err := proto.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		e, err := decodeCommand(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeClaims(e.claimBodies, nil)
		if err != nil {
			t.Fatal(err)
		}
		if e.time != want.TimeUnixNano || len(got) != len(want.ClaimBatch.GetClaims()) {
			t.Fatalf("time %d and %d claims, want %d and %d", e.time, len(got), want.TimeUnixNano, len(want.ClaimBatch.GetClaims()))
		}
		for i, w := range want.ClaimBatch.GetClaims() {
			g := got[i]
			if string(g.requestID) != w.RequestId || string(g.campaignID) != w.CampaignId || string(g.itemID) != w.ItemId ||
				string(g.userID) != w.UserId || g.quantity != w.Quantity {
				t.Fatalf("claim %d: %+v, want %v", i, g, w)
			}
		}
	}
}

func TestInvalidUTF8IDIsRefusedNotFatal(t *testing.T) {
	h := newHarness(t)
	h.openSale(5)
	raw := protowire.AppendTag(nil, fieldClaimRequestID, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("r1"))
	for _, f := range []protowire.Number{fieldClaimCampaignID, fieldClaimItemID} {
		raw = protowire.AppendTag(raw, f, protowire.BytesType)
		raw = protowire.AppendBytes(raw, []byte(map[protowire.Number]string{fieldClaimCampaignID: "c", fieldClaimItemID: "i"}[f]))
	}
	raw = protowire.AppendTag(raw, fieldClaimUserID, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte{'u', 0xff})
	raw = protowire.AppendTag(raw, fieldClaimQuantity, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 1)
	body := protowire.AppendTag(nil, fieldClaimBatchClaims, protowire.BytesType)
	body = protowire.AppendBytes(body, raw)
	data := marshal(t, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH, TimeUnixNano: h.now})
	data = protowire.AppendTag(data, fieldCommandClaimBatch, protowire.BytesType)
	data = protowire.AppendBytes(data, body)
	res := h.raw(data).(*Result)
	if len(res.Outcomes) != 1 || res.Outcomes[0].Reason != ReasonInvalidArgument {
		t.Fatalf("outcomes %+v, want one INVALID_ARGUMENT", res.Outcomes)
	}
}

func TestEmptyClaimBatch(t *testing.T) {
	h := newHarness(t)
	if res := h.apply(claimBatch()); len(res.Outcomes) != 0 {
		t.Fatalf("outcomes %+v, want none", res.Outcomes)
	}
}

func TestBrokenInvariantPanics(t *testing.T) {
	h := newHarness(t)
	h.openSale(5)
	h.mustClaim(claimReq("u", 1))
	h.f.s.item("c", "i").sold++ // as a bug would
	mustPanic(t, "invariant broken", func() { h.apply(expire()) })
	mustPanic(t, "below zero", func() { subCounter(1, 2) })
	mustPanic(t, "overflows", func() { addCounter(1<<63, 1<<63) })
}

func TestReasonNames(t *testing.T) {
	want := map[Reason]string{
		ReasonOK: "OK", ReasonSoldOut: "SOLD_OUT", ReasonLimitReached: "LIMIT_REACHED", ReasonNotEligible: "NOT_ELIGIBLE",
		ReasonCampaignClosed: "CAMPAIGN_CLOSED", ReasonCampaignNotFound: "CAMPAIGN_NOT_FOUND", ReasonItemNotFound: "ITEM_NOT_FOUND",
		ReasonClaimNotFound: "CLAIM_NOT_FOUND", ReasonInvalidArgument: "INVALID_ARGUMENT", ReasonAlreadyExists: "ALREADY_EXISTS",
		ReasonInsufficientStock: "INSUFFICIENT_STOCK", ReasonAlreadySettled: "ALREADY_SETTLED", ReasonAlreadyReleased: "ALREADY_RELEASED",
		ReasonRequestIDReused: "REQUEST_ID_REUSED", ReasonWrongCampaignKind: "WRONG_CAMPAIGN_KIND",
		ReasonNoDrawsLeft: "NO_DRAWS_LEFT", ReasonNoFullSet: "NO_FULL_SET", ReasonPoolEmpty: "POOL_EMPTY",
		ReasonCompensating: "COMPENSATING", ReasonNotCompensating: "NOT_COMPENSATING", 20: "Reason(20)",
	}
	for r, name := range want {
		if r.String() != name {
			t.Errorf("Reason(%d).String() = %q, want %q", r, r.String(), name)
		}
	}
	if ReasonWrongCampaignKind != 14 || ReasonPoolEmpty != 17 || ReasonNotCompensating != 19 {
		t.Error("Reason numbers moved: they must equal flashdpb.Reason")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{{IdempotencyRetention: -1}, {IdempotencyMaxRecords: -1}, {IdempotencyMaxRecords: idempotencyMaxRecordsMax + 1}} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v): %v, want ErrInvalidConfig", cfg, err)
		}
	}
	f, err := New(Config{})
	if err != nil || f.cfg.IdempotencyRetention != defaultIdempotencyRetention || f.cfg.IdempotencyMaxRecords != defaultIdempotencyMaxRecords {
		t.Fatalf("defaults: %+v, %v", f.cfg, err)
	}
}
