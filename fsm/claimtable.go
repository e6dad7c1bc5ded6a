package fsm

import "unsafe"

// claimChunkLen is how many claim records one chunk holds (48 KiB).
const claimChunkLen = 1024

// claimRecord is one claim as the state machine keeps it: 40 bytes and no
// pointers, plus its request and user IDs in the key arena. Without
// pointers, the garbage collector neither scans the claim chunks nor marks
// a string per claim: a million claims cost it nothing. The item is a
// number in claimTable.items; the campaign and the deadline are reached
// through it (a campaign's reservation TTL never changes, so deadline =
// created + TTL).
type claimRecord struct {
	keys       uint64 // arena position of the request ID, followed by the user ID
	created    int64  // command time, Unix nanoseconds
	prevByUser uint64 // the same user's previous claim ID; 0: none
	item       uint32 // index in claimTable.items
	quantity   uint32
	requestLen uint8 // IDs are at most idMaxBytes long
	userLen    uint8
	state      ClaimState
}

// live reports whether the claim counts against the user's per-user limit.
func (c *claimRecord) live() bool { return c.state != ClaimReleased }

// open reports whether the claim holds its stock as reserved: settlement
// (or compensation) is still to come, and the feed hands it out.
func (c *claimRecord) open() bool { return c.state != ClaimSettled && c.state != ClaimReleased }

// expiring reports whether the claim waits for its deadline in its
// campaign's expiry queue: RESERVED is released there, ORDERING kept to be
// compensated.
func (c *claimRecord) expiring() bool { return c.state == ClaimReserved || c.state == ClaimOrdering }

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
	keys   keyArena
	items  []*item // every item ever added, by number; never shrinks
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

// addClaim stores rec, with its request and user IDs, under the next claim
// ID and returns that ID.
func addClaim[K text](t *claimTable, rec claimRecord, requestID, userID K) uint64 {
	if t.n%claimChunkLen == 0 {
		t.chunks = append(t.chunks, &claimChunk{epoch: t.epoch})
	}
	rec.keys = addKeys(&t.keys, requestID, userID)
	rec.requestLen, rec.userLen = uint8(len(requestID)), uint8(len(userID))
	t.n++
	*t.mutable(t.n) = rec
	return t.n
}

// addItem numbers it for claims to point at.
func (t *claimTable) addItem(it *item) uint32 {
	t.items = append(t.items, it)
	return uint32(len(t.items) - 1)
}

func (t *claimTable) item(c *claimRecord) *item       { return t.items[c.item] }
func (t *claimTable) requestID(c *claimRecord) string { return t.keys.text(c.keys, int(c.requestLen)) }
func (t *claimTable) userID(c *claimRecord) string {
	return t.keys.text(c.keys+uint64(c.requestLen), int(c.userLen))
}

// deadline is when the reservation expires; 0 means never.
func (t *claimTable) deadline(c *claimRecord) int64 {
	ttl := t.item(c).campaign.reservationTTL
	if ttl == 0 {
		return 0
	}
	return c.created + ttl
}

// view returns a read-only table that keeps showing the current claims
// while t goes on changing.
func (t *claimTable) view() claimTable {
	t.epoch++
	return claimTable{
		chunks: append([]*claimChunk(nil), t.chunks...), n: t.n, epoch: t.epoch - 1,
		keys: t.keys.view(), items: t.items[:len(t.items):len(t.items)],
	}
}

// keyArenaChunkLen is the size of one key arena chunk.
const keyArenaChunkLen = 1 << 20

// keyArena stores the claims' IDs back to back in large byte chunks. Bytes
// are written once, when a claim is added, and never again (a chunk is not
// reused, even when a restore replaces the state), which is what makes the
// strings text returns safe: they point into the chunk instead of copying.
type keyArena struct {
	chunks [][]byte // each of capacity keyArenaChunkLen; only the last has room
}

// addKeys appends a then b and returns where a starts. Together they are at
// most 2*idMaxBytes, far below a chunk.
func addKeys[K text](arena *keyArena, a, b K) uint64 {
	last := len(arena.chunks) - 1
	if last < 0 || len(arena.chunks[last])+len(a)+len(b) > keyArenaChunkLen {
		arena.chunks = append(arena.chunks, make([]byte, 0, keyArenaChunkLen))
		last++
	}
	chunk := arena.chunks[last]
	pos := uint64(last)*keyArenaChunkLen + uint64(len(chunk))
	chunk = append(chunk, a...)
	arena.chunks[last] = append(chunk, b...)
	return pos
}

// text returns the n bytes at pos as a string without copying them.
func (arena *keyArena) text(pos uint64, n int) string {
	if n == 0 {
		return ""
	}
	chunk := arena.chunks[pos/keyArenaChunkLen]
	return unsafe.String(&chunk[pos%keyArenaChunkLen], n)
}

// view returns an arena that reads the same bytes while arena grows.
func (arena *keyArena) view() keyArena {
	return keyArena{chunks: append([][]byte(nil), arena.chunks...)}
}
