package fsm

import (
	"fmt"

	"github.com/flashd/flashd/fsm/fsmpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Field numbers of fsmpb.Command and the claim messages, for the claim batch
// decoder below. They are the .proto's and never change.
const (
	fieldCommandType       = 1
	fieldCommandTime       = 2
	fieldCommandClaimBatch = 14
	fieldClaimBatchClaims  = 1
	fieldClaimRequestID    = 1
	fieldClaimCampaignID   = 2
	fieldClaimItemID       = 3
	fieldClaimUserID       = 4
	fieldClaimQuantity     = 5
)

// envelope is a log entry's command. A claim batch keeps its claims as the
// raw bytes of the entry: proto.Unmarshal would spend more time allocating
// a message and four strings per claim than the whole claim takes to apply
// (see BenchmarkDecodeClaimBatch), so they are read in place and only what a
// claim record keeps is copied. Every other command is small and rare, and
// is decoded with proto.Unmarshal.
type envelope struct {
	typ         fsmpb.CommandType
	time        int64
	claimBodies [][]byte       // every claim_batch field in the entry, in order
	cmd         *fsmpb.Command // every other type
}

// claimRequest is one claim of a batch, pointing into the log entry, with
// the hashes of its request and user IDs in their indexes.
type claimRequest struct {
	requestID   []byte
	campaignID  []byte
	itemID      []byte
	userID      []byte
	quantity    uint32
	requestHash uint64
	userHash    uint64
}

// decodeEnvelope decodes a log entry. An error means the entry is not a
// command this version understands.
func decodeEnvelope(data []byte) (envelope, error) {
	var e envelope
	for len(data) > 0 {
		num, wt, n := protowire.ConsumeTag(data)
		if n < 0 {
			return e, protowire.ParseError(n)
		}
		data = data[n:]
		switch {
		case num == fieldCommandType && wt == protowire.VarintType:
			v, m := protowire.ConsumeVarint(data)
			n = m
			e.typ = fsmpb.CommandType(int32(v))
		case num == fieldCommandTime && wt == protowire.VarintType:
			v, m := protowire.ConsumeVarint(data)
			n = m
			e.time = int64(v)
		case num == fieldCommandClaimBatch && wt == protowire.BytesType:
			v, m := protowire.ConsumeBytes(data)
			n = m
			e.claimBodies = append(e.claimBodies, v)
		default:
			n = protowire.ConsumeFieldValue(num, wt, data)
		}
		if n < 0 {
			return e, protowire.ParseError(n)
		}
		data = data[n:]
	}
	return e, nil
}

// decodeCommand decodes a whole log entry.
func decodeCommand(data []byte) (envelope, error) {
	e, err := decodeEnvelope(data)
	if err != nil {
		return e, err
	}
	if e.typ == fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH {
		if len(e.claimBodies) == 0 {
			return e, fmt.Errorf("%v without its body", e.typ)
		}
		return e, nil
	}
	e.cmd = &fsmpb.Command{}
	if err := proto.Unmarshal(data, e.cmd); err != nil {
		return e, err
	}
	return e, checkBody(e.cmd)
}

// checkBody reports whether cmd's type is one this version applies and the
// body matching it is set. A type from a newer version stops this node
// rather than being skipped, which would make it diverge from the nodes that
// apply it.
func checkBody(cmd *fsmpb.Command) error {
	var set bool
	switch cmd.GetType() {
	case fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN:
		set = cmd.CreateCampaign != nil
	case fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN:
		set = cmd.UpdateCampaign != nil
	case fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM:
		set = cmd.AddItem != nil
	case fsmpb.CommandType_COMMAND_TYPE_ADJUST_STOCK:
		set = cmd.AdjustStock != nil
	case fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH:
		set = cmd.ClaimBatch != nil
	case fsmpb.CommandType_COMMAND_TYPE_SETTLE:
		set = cmd.Settle != nil
	case fsmpb.CommandType_COMMAND_TYPE_RELEASE:
		set = cmd.Release != nil
	case fsmpb.CommandType_COMMAND_TYPE_MARK_ORDERING:
		set = cmd.MarkOrdering != nil
	case fsmpb.CommandType_COMMAND_TYPE_MARK_CANCELLING:
		set = cmd.MarkCancelling != nil
	case fsmpb.CommandType_COMMAND_TYPE_EXPIRE:
		set = cmd.Expire != nil
	case fsmpb.CommandType_COMMAND_TYPE_REGISTER_NODE:
		set = cmd.RegisterNode != nil
	case fsmpb.CommandType_COMMAND_TYPE_SET_FRONT_DOOR_CONFIG:
		set = cmd.SetFrontDoorConfig != nil
	case fsmpb.CommandType_COMMAND_TYPE_DEFINE_CARDS:
		set = cmd.DefineCards != nil
	case fsmpb.CommandType_COMMAND_TYPE_GRANT_DRAWS:
		set = cmd.GrantDraws != nil
	case fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD:
		set = cmd.DrawCard != nil
	case fsmpb.CommandType_COMMAND_TYPE_REDEEM_SET:
		set = cmd.RedeemSet != nil
	case fsmpb.CommandType_COMMAND_TYPE_CLOSE_AND_SPLIT:
		set = cmd.CloseAndSplit != nil
	case fsmpb.CommandType_COMMAND_TYPE_LEASE_CLAIMS:
		set = cmd.LeaseClaims != nil
	case fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD_BATCH:
		set = cmd.DrawCardBatch != nil
	default:
		return fmt.Errorf("%w: %v", ErrUnknownCommand, cmd.GetType())
	}
	if !set {
		return fmt.Errorf("%w: %v without its body", ErrMalformedCommand, cmd.GetType())
	}
	return nil
}

// decodeClaims appends the claims of every claim_batch body to claims.
func decodeClaims(bodies [][]byte, claims []claimRequest) ([]claimRequest, error) {
	for _, body := range bodies {
		for len(body) > 0 {
			num, wt, n := protowire.ConsumeTag(body)
			if n < 0 {
				return claims, protowire.ParseError(n)
			}
			body = body[n:]
			if num != fieldClaimBatchClaims || wt != protowire.BytesType {
				n = protowire.ConsumeFieldValue(num, wt, body)
			} else {
				var raw []byte
				raw, n = protowire.ConsumeBytes(body)
				if n >= 0 {
					claims = append(claims, claimRequest{})
					if err := decodeClaim(raw, &claims[len(claims)-1]); err != nil {
						return claims, err
					}
				}
			}
			if n < 0 {
				return claims, protowire.ParseError(n)
			}
			body = body[n:]
		}
	}
	return claims, nil
}

// decodeClaim reads one ClaimRequest. Like proto.Unmarshal, it skips fields
// it does not know and keeps the last of a repeated scalar; unlike it, it
// leaves UTF-8 checking to ID validation, which refuses invalid UTF-8.
func decodeClaim(b []byte, r *claimRequest) error {
	for len(b) > 0 {
		if n := decodeShortField(b, r); n > 0 {
			b = b[n:]
			continue
		}
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == fieldClaimQuantity && wt == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			r.quantity = uint32(v)
		case num >= fieldClaimRequestID && num <= fieldClaimUserID && wt == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			*claimField(r, num) = v
		default:
			n = protowire.ConsumeFieldValue(num, wt, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// decodeShortField decodes the field at the front of b if it is a known
// claim field in the form a claim's fields nearly always take: a one-byte
// tag, then a one-byte quantity or a one-byte length (IDs are at most 128
// bytes, so most are shorter than 128). It returns the bytes it consumed,
// or 0 to leave the field to the general decoder, which also reports every
// malformed field.
func decodeShortField(b []byte, r *claimRequest) int {
	if len(b) < 2 || b[0] >= 0x80 || b[1] >= 0x80 {
		return 0
	}
	num, wt, v := protowire.Number(b[0]>>3), protowire.Type(b[0]&7), int(b[1])
	switch {
	case num == fieldClaimQuantity && wt == protowire.VarintType:
		r.quantity = uint32(v)
		return 2
	case num >= fieldClaimRequestID && num <= fieldClaimUserID && wt == protowire.BytesType && 2+v <= len(b):
		*claimField(r, num) = b[2 : 2+v : 2+v]
		return 2 + v
	}
	return 0
}

func claimField(r *claimRequest, num protowire.Number) *[]byte {
	switch num {
	case fieldClaimRequestID:
		return &r.requestID
	case fieldClaimCampaignID:
		return &r.campaignID
	case fieldClaimItemID:
		return &r.itemID
	}
	return &r.userID
}

// EncodeCommand encodes cmd as a log entry. It refuses a command the state
// machine would stop on (an unknown type, or a body that does not match the
// type), so a bad proposal fails at the proposer instead of halting every
// node.
func EncodeCommand(cmd *fsmpb.Command) ([]byte, error) {
	if cmd == nil {
		return nil, fmt.Errorf("encode command: %w", ErrMalformedCommand)
	}
	if err := checkBody(cmd); err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	if bodies(cmd) != 1 {
		return nil, fmt.Errorf("encode command: %w: %v with more than one body", ErrMalformedCommand, cmd.GetType())
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command %v: %w", cmd.GetType(), err)
	}
	return data, nil
}

// bodies counts the body fields set.
func bodies(cmd *fsmpb.Command) int {
	n := 0
	for _, set := range []bool{
		cmd.CreateCampaign != nil, cmd.UpdateCampaign != nil, cmd.AddItem != nil, cmd.AdjustStock != nil,
		cmd.ClaimBatch != nil, cmd.Settle != nil, cmd.Release != nil, cmd.Expire != nil,
		cmd.RegisterNode != nil, cmd.SetFrontDoorConfig != nil, cmd.DefineCards != nil, cmd.GrantDraws != nil,
		cmd.DrawCard != nil, cmd.RedeemSet != nil, cmd.CloseAndSplit != nil, cmd.LeaseClaims != nil,
		cmd.DrawCardBatch != nil, cmd.MarkOrdering != nil, cmd.MarkCancelling != nil,
	} {
		if set {
			n++
		}
	}
	return n
}
