package check

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

// The sequential specification of one item, for porcupine.
//
// State: the stock left and what each user holds. A claim of q units by a
// user who holds h is
//   - refusable as LIMIT_REACHED when h+q exceeds the per-user limit,
//   - refusable as SOLD_OUT when fewer than q units are left,
//   - granted otherwise, and then it takes q units.
//
// Either true refusal is accepted (the store checks the limit first, a front
// door may answer from its sold-out cache first; both are correct answers).
// An operation whose outcome the client never learned is pending: its return
// is at the end of time and its output is Unknown, which the model accepts
// whatever the state, granting if a grant is possible. Not granting is
// covered by linearizing it after everything else (as porcupine's own etcd
// model treats timed-out operations). The final read observes the stock left
// and every user's holdings, so grants nobody saw are accounted for.

// itemModel is what the model needs to know of an item: its stock and limit
// and how many distinct users its history names (users are numbered densely
// per item, so a state is a short string of counters).
type itemModel struct {
	key   string
	stock uint64
	limit uint32
	users int
	width int // bytes per user counter: 1 when the limit fits, else 4
	names []string
}

func newItemModel(spec ItemSpec, users []string) *itemModel {
	m := &itemModel{key: spec.Key(), stock: spec.Stock, limit: spec.PerUserLimit, users: len(users), width: 1, names: users}
	if m.limit > 255 {
		m.width = 4
	}
	return m
}

// claimInput is a claim by a user (numbered per item), or the final read.
type claimInput struct {
	item      *itemModel
	read      bool
	user      int
	quantity  uint32
	requestID string
}

// claimOutput is what the operation returned. For the read: the stock left
// and the users' holdings, encoded as the state encodes them.
type claimOutput struct {
	outcome   Outcome
	claimID   uint64
	remaining uint64
	holdings  string
}

// claimState is comparable, so porcupine may compare states with ==.
type claimState struct {
	started   bool
	remaining uint64
	holdings  string // item.width bytes per user, little endian
}

func (m *itemModel) initial() claimState {
	return claimState{started: true, remaining: m.stock, holdings: string(make([]byte, m.users*m.width))}
}

func (m *itemModel) held(holdings string, user int) uint64 {
	b := holdings[user*m.width : (user+1)*m.width]
	if m.width == 1 {
		return uint64(b[0])
	}
	return uint64(binary.LittleEndian.Uint32([]byte(b)))
}

func (m *itemModel) withHeld(holdings string, user int, v uint64) string {
	b := []byte(holdings)
	if m.width == 1 {
		b[user] = byte(v)
	} else {
		binary.LittleEndian.PutUint32(b[user*m.width:], uint32(v))
	}
	return string(b)
}

// encodeHoldings encodes users' holdings as the state does.
func (m *itemModel) encodeHoldings(held map[int]uint64) string {
	h := string(make([]byte, m.users*m.width))
	for u, q := range held {
		h = m.withHeld(h, u, q)
	}
	return h
}

func step(state, input, output any) (bool, any) {
	in := input.(claimInput)
	out := output.(claimOutput)
	s := state.(claimState)
	m := in.item
	if !s.started {
		s = m.initial()
	}
	if in.read {
		return s.remaining == out.remaining && s.holdings == out.holdings, s
	}
	q := uint64(in.quantity)
	held := m.held(s.holdings, in.user)
	overLimit := held+q > uint64(m.limit)
	soldOut := s.remaining < q
	grant := func() claimState {
		return claimState{started: true, remaining: s.remaining - q, holdings: m.withHeld(s.holdings, in.user, held+q)}
	}
	switch out.outcome {
	case Granted:
		if overLimit || soldOut {
			return false, s
		}
		return true, grant()
	case SoldOut:
		return soldOut, s
	case LimitReached:
		return overLimit, s
	case Unknown:
		if overLimit || soldOut {
			return true, s
		}
		return true, grant()
	}
	return false, s
}

// claimModel is the model of every item at once, partitioned per item:
// the state of a partition starts at the stock of the item its first
// operation names.
func claimModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			index := map[*itemModel]int{}
			var parts [][]porcupine.Operation
			for _, op := range history {
				m := op.Input.(claimInput).item
				i, ok := index[m]
				if !ok {
					i = len(parts)
					index[m] = i
					parts = append(parts, nil)
				}
				parts[i] = append(parts[i], op)
			}
			return parts
		},
		Init: func() any { return claimState{} },
		Step: step,
		Hash: func(state any) uint64 {
			s := state.(claimState)
			h := fnv.New64a()
			h.Write([]byte(s.holdings))
			return h.Sum64() ^ s.remaining
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(claimInput), output.(claimOutput)
			if in.read {
				return fmt.Sprintf("final read -> %d left", out.remaining)
			}
			desc := fmt.Sprintf("claim(%s ×%d) -> %s", in.item.names[in.user], in.quantity, out.outcome)
			if out.outcome == Granted {
				desc += fmt.Sprintf(" #%d", out.claimID)
			}
			return desc
		},
		DescribeState: func(state any) string {
			s := state.(claimState)
			if !s.started {
				return "not started"
			}
			return fmt.Sprintf("%d left", s.remaining)
		},
		DescribeOperationMetadata: func(info any) string {
			if info == nil {
				return ""
			}
			return fmt.Sprint(info)
		},
	}
}
