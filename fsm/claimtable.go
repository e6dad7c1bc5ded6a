package fsm

// claimChunkLen is how many claim records one chunk holds (48 KiB).
const claimChunkLen = 1024

// claimRecord is one claim as the state machine keeps it: 48 bytes, plus one
// string allocation shared by the request ID and the user ID. The campaign,
// item and deadline are reached through the item pointer (a campaign's
// reservation TTL never changes, so deadline = created + TTL).
type claimRecord struct {
	item       *item
	keys       string // request ID followed by user ID, split at requestLen
	created    int64  // command time, Unix nanoseconds
	prevByUser uint64 // the same user's previous claim ID; 0: none
	quantity   uint32
	requestLen uint8 // request IDs are at most idMaxBytes long
	state      ClaimState
}

func (c *claimRecord) requestID() string { return c.keys[:c.requestLen] }
func (c *claimRecord) userID() string    { return c.keys[c.requestLen:] }

// live reports whether the claim counts against the user's per-user limit.
func (c *claimRecord) live() bool { return c.state == ClaimReserved || c.state == ClaimSettled }

// deadline is when the reservation expires; 0 means never.
func (c *claimRecord) deadline() int64 {
	ttl := c.item.campaign.reservationTTL
	if ttl == 0 {
		return 0
	}
	return c.created + ttl
}

// claimChunk is a block of consecutive claim records. epoch says which
// snapshot generation last copied it: older means a snapshot shares it.
type claimChunk struct {
	epoch   uint64
	records [claimChunkLen]claimRecord
}

// claimTable holds every claim, indexed by ID - 1 (IDs are dense from 1), in
// chunks that are copied on write once a snapshot shares them. A snapshot
// then costs a copy of the chunk list, and only the chunks written after it
// are ever copied.
type claimTable struct {
	chunks []*claimChunk
	n      uint64 // claims held; the next claim ID is n + 1
	epoch  uint64 // incremented by every view
}

func (t *claimTable) len() uint64 { return t.n }

// get returns claim id for reading, or nil if there is none.
func (t *claimTable) get(id uint64) *claimRecord {
	if id == 0 || id > t.n {
		return nil
	}
	return &t.chunks[(id-1)/claimChunkLen].records[(id-1)%claimChunkLen]
}

// mutable returns claim id for writing, copying its chunk first if a
// snapshot shares it. id must exist.
func (t *claimTable) mutable(id uint64) *claimRecord {
	i := (id - 1) / claimChunkLen
	if t.chunks[i].epoch != t.epoch {
		c := *t.chunks[i]
		c.epoch = t.epoch
		t.chunks[i] = &c
	}
	return &t.chunks[i].records[(id-1)%claimChunkLen]
}

// add stores rec under the next claim ID and returns that ID.
func (t *claimTable) add(rec claimRecord) uint64 {
	if t.n%claimChunkLen == 0 {
		t.chunks = append(t.chunks, &claimChunk{epoch: t.epoch})
	}
	t.n++
	*t.mutable(t.n) = rec
	return t.n
}

// view returns a read-only table that keeps showing the current claims
// while t goes on changing.
func (t *claimTable) view() claimTable {
	t.epoch++
	return claimTable{chunks: append([]*claimChunk(nil), t.chunks...), n: t.n, epoch: t.epoch - 1}
}
