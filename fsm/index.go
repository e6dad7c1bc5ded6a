package fsm

import "hash/maphash"

// text is what an identifier arrives as: a string from a decoded message, or
// bytes still inside the log entry (the claim hot path, which copies only
// what it keeps).
type text interface{ ~string | ~[]byte }

// refIndex maps a string key to a ref (a number naming a record elsewhere:
// a claim ID, a queue position) without storing the key: the record holds
// it, and keyOf fetches it back. An entry is the ref and 24 bits of the
// key's hash packed in 8 bytes (refSlot), in an open-addressing table
// (linear probing) split into shards that each grow on their own.
//
// Why not a Go map: at a million entries every lookup of a new key is a
// cache miss, and a claim makes two (its request ID, its user). A
// map[string]uint64 costs a second string header per entry and a map lookup
// that probes control words and slots in different cache lines; measured
// here, a miss-then-insert in a Go map of a million entries took about 3
// times as long as in this table. Shards keep growth incremental: doubling
// one shard rehashes 1/256 of the entries, so no apply stalls for a rehash
// of the whole index.
//
// The hash decides only where an entry lives, never whether two keys are
// equal (a hash match is confirmed with keyOf), so the seed may be random:
// it changes no result, and keys crafted to collide cannot be prepared in
// advance.
//
// An index with a gone function drops entries lazily: forget only counts an
// entry out, and its slot stays until an insert reuses it or the shard is
// purged before it would grow. Dropping an entry eagerly costs a hash of its
// key and a cache miss at its slot; the idempotency store drops one for
// every claim it records once it is full (see DESIGN.md).
type refIndex struct {
	shards [refShards]refShard
	n      int // live entries
	seed   maphash.Seed
	keyOf  func(ref uint64) string
	hash   func(key string) uint64 // nil: maphash; tests inject collisions
	// gone reports whether ref was forgotten; nil: entries are never
	// forgotten. A gone ref is not inserted again while its slot may
	// remain (the idempotency store's side refs come round only after 2^39
	// records; a shard is purged every time it fills to 3/4).
	gone func(ref uint64) bool
}

const (
	refShards      = 256
	refShardBits   = 8 // log2(refShards); the hash's top bits pick the shard
	refShardMinCap = 2 * refBucketSlots
)

// refBucketSlots is how many 8-byte slots make a 64-byte cache line. A key's
// probe starts at the first slot of the line its hash picks, so a lookup of
// a key that is absent (every new claim's) usually reads that one line, the
// one prefetch loaded.
const refBucketSlots = 8

// home is the slot where the probe for hash h starts in a table of mask+1
// slots: the start of a cache line (shards are powers of two of at least
// two lines, and allocations of that size are line-aligned).
func home(h, mask uint64) uint64 { return h & mask &^ (refBucketSlots - 1) }

// refShard is one linear-probing table; a slot with ref 0 is empty. A slot
// with a gone ref is occupied until reused or purged.
type refShard struct {
	slots []refSlot
	used  int // slots holding a ref, live or gone
}

// refSlot is an entry: the ref in the low refBits bits, the low tagBits bits
// of its key's hash above. Those hash bits are all a slot's position depends
// on (the shard comes from the top bits, which every entry of the shard
// shares), so a shard can grow to 2^tagBits slots without reading any key;
// and a lookup compares a key only when 24 bits of hash match, one probe in
// 16 million for a key that is not there. Half the 16 bytes of a hash and a
// ref: half the memory, the growth and the cache lines a lookup misses.
type refSlot uint64

const (
	refBits        = 40
	refMax         = 1<<refBits - 1 // claim IDs: at 125 bytes a claim, 137 TB of them
	tagBits        = 64 - refBits
	tagMask        = 1<<tagBits - 1
	refShardMaxCap = 1 << tagBits // 4 billion slots in all
)

func makeSlot(h, ref uint64) refSlot { return refSlot(h<<refBits | ref) }
func (s refSlot) ref() uint64        { return uint64(s) & refMax }
func (s refSlot) tag() uint64        { return uint64(s) >> refBits }
func tag(h uint64) uint64            { return h & tagMask }

func newRefIndex(keyOf func(ref uint64) string) *refIndex {
	return &refIndex{seed: maphash.MakeSeed(), keyOf: keyOf}
}

func (x *refIndex) len() int { return x.n }

// hashKey hashes key for the index.
func hashKey[K text](x *refIndex, key K) uint64 {
	if x.hash != nil {
		return x.hash(string(key))
	}
	switch k := any(key).(type) {
	case string:
		return maphash.String(x.seed, k)
	case []byte:
		return maphash.Bytes(x.seed, k)
	}
	return maphash.String(x.seed, string(key))
}

func (x *refIndex) shard(h uint64) *refShard { return &x.shards[h>>(64-refShardBits)] }

// findRef returns the ref stored for key, and key's hash for a following
// insert or replace.
func findRef[K text](x *refIndex, key K) (ref, hash uint64, ok bool) {
	h := hashKey(x, key)
	ref, ok = lookup(x, h, key)
	return ref, h, ok
}

// lookup returns the ref stored for key, whose hash is h.
func lookup[K text](x *refIndex, h uint64, key K) (ref uint64, ok bool) {
	sh := x.shard(h)
	if len(sh.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(sh.slots) - 1)
	t := tag(h)
	for i := home(h, mask); sh.slots[i] != 0; i = (i + 1) & mask {
		if s := sh.slots[i]; s.tag() == t && !x.isGone(s.ref()) && x.keyOf(s.ref()) == string(key) {
			return s.ref(), true
		}
	}
	return 0, false
}

// prefetch loads the slot where a lookup of hash h starts. A claim batch
// prefetches all its keys before looking any up, so that their cache misses
// overlap instead of following one another. The result means nothing; it
// is returned so the load is not optimized away.
func (x *refIndex) prefetch(h uint64) uint64 {
	sh := x.shard(h)
	if len(sh.slots) == 0 {
		return 0
	}
	return uint64(sh.slots[home(h, uint64(len(sh.slots)-1))])
}

func (x *refIndex) isGone(ref uint64) bool { return x.gone != nil && x.gone(ref) }

// insert adds ref under a key with hash h that the index does not hold.
func (x *refIndex) insert(h, ref uint64) {
	if ref == 0 || ref > refMax {
		panic("fsm: index ref out of range")
	}
	sh := x.shard(h)
	if (sh.used+1)*4 > len(sh.slots)*3 { // keep the load at most 3/4
		x.makeRoom(sh)
	}
	mask := uint64(len(sh.slots) - 1)
	i := home(h, mask)
	for sh.slots[i] != 0 && !x.isGone(sh.slots[i].ref()) {
		i = (i + 1) & mask
	}
	if sh.slots[i] == 0 {
		sh.used++
	}
	// A gone slot on the key's probe sequence may take it: the key is not
	// held, so no live entry for it lies further on.
	sh.slots[i] = makeSlot(h, ref)
	x.n++
}

// makeRoom purges the shard's gone entries and doubles it unless that left
// it at most 5/8 full. Without gone entries it always doubles, as a full
// table must; with them, a shard whose entries are mostly forgotten is
// swept in place instead of growing without bound.
func (x *refIndex) makeRoom(sh *refShard) {
	if x.gone != nil && sh.used > 0 {
		sh.purge(x.gone)
		if (sh.used+1)*8 <= len(sh.slots)*5 {
			return
		}
	}
	sh.grow()
}

// forget counts out the entry of ref, which x.gone now reports as gone. Its
// slot is left for a later insert or purge.
func (x *refIndex) forget() { x.n-- }

// replace changes the ref of the key with hash h from old to ref.
func (x *refIndex) replace(h, old, ref uint64) {
	sh := x.shard(h)
	if ref == 0 || ref > refMax {
		panic("fsm: index ref out of range")
	}
	sh.slots[sh.find(h, old)] = makeSlot(h, ref)
}

// reserve sizes the shards for n entries in all, so that adding them does
// not grow any (with hashes spread evenly).
func (x *refIndex) reserve(n uint64) {
	perShard := int(n/refShards) + 1
	for i := range x.shards {
		sh := &x.shards[i]
		for len(sh.slots)*3 < perShard*4+refShardMinCap {
			sh.grow()
		}
	}
}

// each calls fn for every live entry, in no particular order.
func (x *refIndex) each(fn func(ref uint64)) {
	for i := range x.shards {
		for _, s := range x.shards[i].slots {
			if s != 0 && !x.isGone(s.ref()) {
				fn(s.ref())
			}
		}
	}
}

// find returns the slot holding ref under hash h; it must exist.
func (sh *refShard) find(h, ref uint64) uint64 {
	if len(sh.slots) > 0 {
		mask := uint64(len(sh.slots) - 1)
		want := makeSlot(h, ref)
		for i := home(h, mask); sh.slots[i] != 0; i = (i + 1) & mask {
			if sh.slots[i] == want {
				return i
			}
		}
	}
	panic("fsm: index does not hold the entry being changed")
}

// put stores s in the first free slot of its probe sequence.
func (sh *refShard) put(s refSlot) {
	mask := uint64(len(sh.slots) - 1)
	i := home(s.tag(), mask)
	for sh.slots[i] != 0 {
		i = (i + 1) & mask
	}
	sh.slots[i] = s
}

// purge empties the slots of gone entries in place. The sweep starts just
// after an empty slot, so no cluster wraps around its start; delete moves
// entries only backwards within their cluster, into the slot being looked
// at, which is then looked at again.
func (sh *refShard) purge(gone func(ref uint64) bool) {
	mask := uint64(len(sh.slots) - 1)
	empty := uint64(0)
	for sh.slots[empty] != 0 { // used < len(slots): one is empty
		empty++
	}
	for k := uint64(1); k <= mask; k++ {
		i := (empty + k) & mask
		for sh.slots[i] != 0 && gone(sh.slots[i].ref()) {
			sh.delete(i)
			sh.used--
		}
	}
}

func (sh *refShard) grow() {
	old := sh.slots
	if 2*len(old) > refShardMaxCap {
		panic("fsm: index shard full") // above 3 billion entries
	}
	sh.slots = make([]refSlot, max(refShardMinCap, 2*len(old)))
	for _, s := range old {
		if s != 0 {
			sh.put(s)
		}
	}
}

// delete empties slot i and shifts back the entries after it that would no
// longer be reachable from their home slot (no tombstones to clean later).
func (sh *refShard) delete(i uint64) {
	mask := uint64(len(sh.slots) - 1)
	for j := (i + 1) & mask; sh.slots[j] != 0; j = (j + 1) & mask {
		start := home(sh.slots[j].tag(), mask)
		// The entry at j may fill hole i unless its home lies cyclically
		// in (i, j].
		if (j-start)&mask >= (j-i)&mask {
			sh.slots[i] = sh.slots[j]
			i = j
		}
	}
	sh.slots[i] = 0
}

// FNV-1a, 64 and 32 bits (http://www.isthe.com/chongo/tech/comp/fnv/).
const (
	fnv64Offset = 14695981039346656037
	fnv64Prime  = 1099511628211
	fnv32Offset = 2166136261
	fnv32Prime  = 16777619
)

func fnv32a[K text](key K) uint32 {
	h := uint32(fnv32Offset)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= fnv32Prime
	}
	return h
}
