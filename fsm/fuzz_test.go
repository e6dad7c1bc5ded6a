package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/flashd/flashd/fsm/fsmpb"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// What a fuzz failure means here. A log entry that does not decode stops
// the node by design (applyLog panics: skipping it would make this replica
// diverge from the others), so the decoder itself must never panic: on any
// bytes it returns a command or an error. The appliers are fuzzed with
// well-formed commands (what EncodeCommand accepts) holding arbitrary
// values: none may panic, and every invariant must hold after each one.

// FuzzDecodeCommand: decodeCommand and the claim batch decoder never panic,
// and the in-place claim decoder agrees with proto.Unmarshal on every batch
// that proto accepts.
func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range seedCommands() {
		data, err := EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x05})                   // a claim batch type and no body
	f.Add([]byte{0x08, 0x05, 0x72, 0x02, 0x0a}) // a body cut short
	f.Add([]byte{0x08, 0x63})                   // an unknown type
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decodeCommand(data)
		if err != nil || e.typ != fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH {
			return
		}
		claims, err := decodeClaims(e.claimBodies, nil)
		var want fsmpb.ClaimBatch
		for _, body := range e.claimBodies {
			// Repeated message fields merge: each body adds its claims.
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(body, &want); err != nil {
				return // proto refuses it too (or refuses its UTF-8): nothing to compare
			}
		}
		if err != nil {
			t.Fatalf("the claim decoder refuses what proto.Unmarshal reads: %v", err)
		}
		if len(claims) != len(want.Claims) {
			t.Fatalf("%d claims decoded, proto.Unmarshal reads %d", len(claims), len(want.Claims))
		}
		for i, c := range claims {
			w := want.Claims[i]
			if string(c.requestID) != w.RequestId || string(c.campaignID) != w.CampaignId ||
				string(c.itemID) != w.ItemId || string(c.userID) != w.UserId || c.quantity != w.Quantity {
				t.Fatalf("claim %d decoded as %q %q %q %q %d, proto.Unmarshal reads %v",
					i, c.requestID, c.campaignID, c.itemID, c.userID, c.quantity, w)
			}
		}
	})
}

// FuzzApplyCommands turns bytes into a sequence of well-formed commands
// with arbitrary values, over few enough IDs that they meet, and applies
// them to an FSM that checks every invariant after each (a broken one
// panics). At the end, applying the same log in one batch gives the same
// state, and so does a snapshot restored.
func FuzzApplyCommands(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7}, 16))
	f.Add(bytes.Repeat([]byte{0xff, 0x00, 0x80, 0x7f}, 32))
	// A sale: create, add, open, claims, settle and release.
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 3, 0, 4, 4, 1, 1, 1, 0, 5, 1, 0, 6, 1, 0, 7, 2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		fz, err := New(Config{CheckInvariants: true, IdempotencyMaxRecords: 64, IdempotencyRetention: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		in := &fuzzInput{data: data, now: t0}
		var logs []*raft.Log
		for i := 0; i < fuzzCommandsMax && !in.done(); i++ {
			in.rawClaims = nil
			cmd := in.command(fz)
			var entry []byte
			if in.rawClaims != nil {
				entry = encodeClaimBatch(cmd.TimeUnixNano, in.rawClaims)
			} else if entry, err = EncodeCommand(cmd); err != nil {
				t.Fatalf("EncodeCommand refused a generated command %v: %v", cmd, err)
			}
			l := &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: entry}
			logs = append(logs, l)
			res, ok := fz.Apply(l).(*Result)
			if !ok || len(res.Outcomes) == 0 {
				t.Fatalf("command %v: no outcome (%v)", cmd, res)
			}
		}
		// The same log in one batch, and the state through a snapshot,
		// come to the same state.
		cfg := Config{IdempotencyMaxRecords: 64, IdempotencyRetention: time.Minute}
		batched, _ := New(cfg)
		batched.ApplyBatch(logs)
		want, index := fz.Digest()
		if got, gotIndex := batched.Digest(); got != want || gotIndex != index {
			t.Fatalf("the log applied in one batch: digest %s at %d, want %s at %d", got, gotIndex, want, index)
		}
		if got, gotIndex := restored(t, persist(t, fz), cfg).Digest(); got != want || gotIndex != index {
			t.Fatalf("restored digest %s at %d, want %s at %d", got, gotIndex, want, index)
		}
	})
}

// fuzzCommandsMax bounds the commands of one fuzz input, so that each run
// stays fast (the invariant check walks the whole state per command).
const fuzzCommandsMax = 64

// fuzzInput reads values from fuzz bytes; past the end, every value is 0.
type fuzzInput struct {
	data      []byte
	now       int64
	rawClaims []*fsmpb.ClaimRequest // the last command's claims, when it is a claim batch
}

func (in *fuzzInput) done() bool { return len(in.data) == 0 }

func (in *fuzzInput) byte() byte {
	if len(in.data) == 0 {
		return 0
	}
	b := in.data[0]
	in.data = in.data[1:]
	return b
}

func (in *fuzzInput) u64() uint64 {
	var b [8]byte
	n := copy(b[:], in.data)
	in.data = in.data[n:]
	return binary.LittleEndian.Uint64(b[:])
}

// number is a small number most of the time, and now and then an edge
// (0, the largest values) or any 64 bits: limits and overflows live there.
func (in *fuzzInput) number() uint64 {
	switch b := in.byte(); {
	case b < 200:
		return uint64(b % 8)
	case b < 220:
		return uint64(b - 200)
	case b < 230:
		return math.MaxUint64 - uint64(b-220)
	case b < 240:
		return uint64(math.MaxInt64) - uint64(b-230)
	default:
		return in.u64()
	}
}

func (in *fuzzInput) u32() uint32 { return uint32(min(in.number(), math.MaxUint32)) }

// signed is number() as a signed value, negative when the byte read says.
func (in *fuzzInput) signed() int64 {
	neg := in.byte()&1 == 1
	v := int64(in.number() & math.MaxInt64)
	if neg {
		return -v
	}
	return v
}

// duration is a span of time, from nothing to years, or any int64.
func (in *fuzzInput) duration() int64 {
	units := []int64{int64(time.Millisecond), int64(time.Second), int64(time.Minute), int64(time.Hour), 365 * 24 * int64(time.Hour)}
	b := in.byte()
	if b >= 250 {
		return in.signed()
	}
	return int64(in.byte()) * units[int(b)%len(units)]
}

// id is one of a few IDs of its kind, so that commands meet; now and then
// an invalid or unusual one (empty, too long, control characters, invalid
// UTF-8, U+FFFD).
func (in *fuzzInput) id(prefix string) string {
	switch b := in.byte(); {
	case b < 240:
		return fmt.Sprint(prefix, b%4)
	case b == 240:
		return ""
	case b == 241:
		return string(bytes.Repeat([]byte(prefix), idMaxBytes+1))[:idMaxBytes+1]
	case b == 242:
		return prefix + "\x00"
	case b == 243:
		return prefix + "\xff"
	case b == 244:
		return prefix + "\uFFFD"
	case b == 245:
		return string(bytes.Repeat([]byte("é"), idMaxBytes/2)) // exactly the limit
	default:
		n := int(in.byte()) % (idMaxBytes + 8)
		s := make([]byte, 0, n)
		for range n {
			s = append(s, in.byte())
		}
		return string(s)
	}
}

// claimID is an existing claim most of the time, else any ID.
func (in *fuzzInput) claimID(f *FSM) uint64 {
	n := uint64(f.Stats().Claims)
	if b := in.byte(); b < 230 && n > 0 {
		return 1 + uint64(b)%n
	}
	return in.number()
}

// command is the next command, stamped with a time that moves on by an
// arbitrary span (a leader's clock may also run behind the last command's).
func (in *fuzzInput) command(f *FSM) *fsmpb.Command {
	in.now = max(0, min(in.now+in.duration(), 1<<62))
	var cmd *fsmpb.Command
	switch in.byte() % 19 {
	case 0:
		cmd = createCampaign(&fsmpb.CreateCampaign{
			CampaignId: in.text("c"), Kind: fsmpb.CampaignKind(in.byte() % 4), Name: in.text("name"),
			StartUnixNano: in.now + in.duration(), EndUnixNano: in.now + in.duration(),
			PerUserLimit: in.u32(), WaveCount: in.u32(), WaveIntervalNanos: in.duration(), ReservationTtlNanos: in.duration(),
		})
	case 1:
		u := &fsmpb.UpdateCampaign{CampaignId: in.text("c")}
		if b := in.byte(); b&1 != 0 {
			st := fsmpb.CampaignState((b >> 1) % 5)
			u.State = &st
		}
		if in.byte()&1 != 0 {
			v := in.now + in.duration()
			u.StartUnixNano = &v
		}
		if in.byte()&1 != 0 {
			v := in.now + in.duration()
			u.EndUnixNano = &v
		}
		cmd = updateCampaign(u)
	case 2:
		cmd = addItem(in.text("c"), in.text("i"), in.number(), in.u32())
	case 3:
		cmd = adjustStock(in.text("c"), in.text("i"), in.signed())
	case 4:
		var claims []*fsmpb.ClaimRequest
		for range 1 + in.byte()%16 {
			claims = append(claims, &fsmpb.ClaimRequest{
				RequestId: in.id("r"), CampaignId: in.id("c"), ItemId: in.id("i"), UserId: in.id("u"), Quantity: in.u32(),
			})
		}
		cmd = claimBatch(claims...)
		in.rawClaims = claims // encoded by hand: proto.Marshal refuses invalid UTF-8
	case 5:
		cmd = settle(in.claimID(f))
	case 6:
		cmd = release(in.claimID(f))
	case 7:
		cmd = markOrdering(in.claimID(f))
	case 8:
		cmd = markCancelling(in.claimID(f))
	case 9:
		cmd = expire()
	case 10:
		cmd = registerNode(&fsmpb.RegisterNode{NodeId: in.text("n"), Region: in.text("region"), GrpcAddr: in.text("addr"),
			HttpAddr: in.text("addr"), Removed: in.byte()&1 != 0})
	case 11:
		cmd = setFrontDoor(&fsmpb.FrontDoorConfig{
			Version: in.number(), GlobalRate: in.float(), PerUserRate: in.float(), PerIpRate: in.float(),
			DegradeLevel: in.u32(), DropFraction: in.float(), DegradeAuto: in.byte()&1 != 0,
		})
	case 12:
		d := &fsmpb.DefineCards{CampaignId: in.text("c"), RewardPool: in.number(), PotCents: in.number(), DrawsPerUserMax: in.number()}
		for range in.byte() % 6 {
			d.Types = append(d.Types, &fsmpb.CardType{TypeId: in.text("t"), Weight: in.number(), Cap: in.number()})
		}
		for range in.byte() % 6 {
			d.SetTypes = append(d.SetTypes, in.text("t"))
		}
		cmd = &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_DEFINE_CARDS, DefineCards: d}
	case 13:
		cmd = &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_GRANT_DRAWS, GrantDraws: &fsmpb.GrantDraws{
			CampaignId: in.text("c"), UserId: in.text("u"), Count: in.u32()}}
	case 14:
		cmd = &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD, DrawCard: &fsmpb.DrawCard{CampaignId: in.text("c"), UserId: in.text("u")}}
	case 15:
		cmd = &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_REDEEM_SET, RedeemSet: &fsmpb.RedeemSet{CampaignId: in.text("c"), UserId: in.text("u")}}
	case 16:
		cmd = &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLOSE_AND_SPLIT, CloseAndSplit: &fsmpb.CloseAndSplit{CampaignId: in.text("c")}}
	case 17:
		cmd = &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_LEASE_CLAIMS, LeaseClaims: &fsmpb.LeaseClaims{
			Group: in.text("g"), Worker: in.text("w"), Max: in.u32(), LeaseNanos: in.duration()}}
	case 18:
		b := &fsmpb.DrawCardBatch{}
		for range 1 + in.byte()%8 {
			b.Draws = append(b.Draws, &fsmpb.DrawCardBatchEntry{RequestId: in.text("r"), CampaignId: in.text("c"), UserId: in.text("u")})
		}
		cmd = &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD_BATCH, DrawCardBatch: b}
	}
	if cmd.ClaimBatch == nil && cmd.DrawCardBatch == nil && in.byte()&3 == 0 {
		cmd.RequestId = in.text("op")
	}
	cmd.Seed = in.number()
	cmd.TimeUnixNano = in.now
	return cmd
}

// encodeClaimBatch is a claim batch entry as EncodeCommand would make it,
// but for any bytes in the IDs: a log entry may hold what proto.Marshal
// would refuse (invalid UTF-8), and the state machine must refuse it as a
// claim, not stop.
func encodeClaimBatch(time int64, claims []*fsmpb.ClaimRequest) []byte {
	var body []byte
	for _, c := range claims {
		var claim []byte
		for _, f := range []struct {
			num protowire.Number
			v   string
		}{{fieldClaimRequestID, c.RequestId}, {fieldClaimCampaignID, c.CampaignId}, {fieldClaimItemID, c.ItemId}, {fieldClaimUserID, c.UserId}} {
			claim = protowire.AppendTag(claim, f.num, protowire.BytesType)
			claim = protowire.AppendString(claim, f.v)
		}
		claim = protowire.AppendTag(claim, fieldClaimQuantity, protowire.VarintType)
		claim = protowire.AppendVarint(claim, uint64(c.Quantity))
		body = protowire.AppendTag(body, fieldClaimBatchClaims, protowire.BytesType)
		body = protowire.AppendBytes(body, claim)
	}
	var e []byte
	e = protowire.AppendTag(e, fieldCommandType, protowire.VarintType)
	e = protowire.AppendVarint(e, uint64(fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH))
	e = protowire.AppendTag(e, fieldCommandTime, protowire.VarintType)
	e = protowire.AppendVarint(e, uint64(time))
	e = protowire.AppendTag(e, fieldCommandClaimBatch, protowire.BytesType)
	return protowire.AppendBytes(e, body)
}

// text is id's pick made valid UTF-8, for the commands EncodeCommand
// (proto.Marshal) encodes.
func (in *fuzzInput) text(prefix string) string { return strings.ToValidUTF8(in.id(prefix), "?") }

// float is a rate or fraction: usually small, now and then negative, huge,
// infinite or NaN.
func (in *fuzzInput) float() float64 {
	switch b := in.byte(); {
	case b < 200:
		return float64(b%10) / 4
	case b == 200:
		return math.NaN()
	case b == 201:
		return math.Inf(1)
	case b == 202:
		return math.Inf(-1)
	default:
		return math.Float64frombits(in.u64())
	}
}

// seedCommands is one of every command type, for the decoder's corpus.
func seedCommands() []*fsmpb.Command {
	in := &fuzzInput{data: bytes.Repeat([]byte{1}, 64), now: t0}
	f, _ := New(Config{})
	var out []*fsmpb.Command
	for typ := range 19 {
		in.data = append([]byte{0, 0, byte(typ)}, bytes.Repeat([]byte{1}, 64)...)
		out = append(out, in.command(f))
	}
	return out
}

// FuzzValidID: the state machine's ID rule and the API's (flashdpb) agree,
// and both are what their comments say: 1 to 128 bytes of valid UTF-8
// without control characters or U+FFFD. An ID the API lets through and the
// state machine refuses would cost a log entry for nothing; the reverse
// would refuse at the door what the store would take.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"u1", "", "a\x00b", "\xff", "é", "\uFFFD", "\u0085", string(bytes.Repeat([]byte("x"), 129)), "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		spec := len(id) > 0 && len(id) <= idMaxBytes && utf8.ValidString(id)
		for _, r := range id {
			spec = spec && !unicode.IsControl(r) && r != utf8.RuneError
		}
		if got := validID(id); got != spec {
			t.Fatalf("fsm validID(%q) = %v, want %v", id, got, spec)
		}
		if got := pb.ValidateID("id", id) == nil; got != spec {
			t.Fatalf("flashdpb.ValidateID(%q) accepts = %v, want %v", id, got, spec)
		}
		if got := validID([]byte(id)); got != spec {
			t.Fatalf("fsm validID([]byte(%q)) = %v, want %v", id, got, spec)
		}
	})
}
