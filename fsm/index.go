package fsm

// text is what an identifier arrives as: a string from a decoded message, or
// bytes still inside the log entry (the claim hot path, which copies only
// what it keeps).
type text interface{ ~string | ~[]byte }

// refIndex maps a string key to a ref (a number naming a record elsewhere:
// a claim ID, a queue position) without storing the key: the record holds
// it, and keyOf fetches it back. A Go map keyed by the string would cost
// another 16-byte header per entry and a second, slower hash; here an entry
// is two words. Keys whose 64-bit hash collides with another key's go to a
// small ordinary map, so a lookup is always exact: the hash decides where an
// entry lives, never whether two keys are equal.
type refIndex struct {
	byHash   map[uint64]uint64 // key hash → ref, for the first key with that hash
	overflow map[string]uint64 // keys whose hash another key already holds
	keyOf    func(ref uint64) string
	hash     func(key string) uint64 // nil: fnv64a; tests inject collisions
}

func newRefIndex(keyOf func(ref uint64) string) *refIndex {
	return &refIndex{byHash: make(map[uint64]uint64), overflow: make(map[string]uint64), keyOf: keyOf}
}

func (x *refIndex) len() int { return len(x.byHash) + len(x.overflow) }

// findRef returns the ref stored for key.
func findRef[K text](x *refIndex, key K) (uint64, bool) {
	ref, ok := x.byHash[indexHash(x, key)]
	if ok && x.keyOf(ref) == string(key) {
		return ref, true
	}
	if len(x.overflow) == 0 {
		return 0, false
	}
	ref, ok = x.overflow[string(key)]
	return ref, ok
}

// put stores ref for key, replacing any ref the key had. key must be a
// string the caller keeps (it may become an overflow map key).
func (x *refIndex) put(key string, ref uint64) {
	h := indexHash(x, key)
	old, ok := x.byHash[h]
	switch {
	case !ok:
		if _, spilled := x.overflow[key]; spilled {
			x.overflow[key] = ref
			return
		}
		x.byHash[h] = ref
	case x.keyOf(old) == key:
		x.byHash[h] = ref
	default:
		x.overflow[key] = ref
	}
}

// remove deletes key, which must map to ref.
func (x *refIndex) remove(key string, ref uint64) {
	h := indexHash(x, key)
	if cur, ok := x.byHash[h]; ok && cur == ref {
		delete(x.byHash, h)
		return
	}
	if cur, ok := x.overflow[key]; !ok || cur != ref {
		panic("fsm: index does not hold the entry being removed")
	}
	delete(x.overflow, key)
}

// each calls fn for every entry, in no particular order.
func (x *refIndex) each(fn func(ref uint64)) {
	for _, ref := range x.byHash {
		fn(ref)
	}
	for _, ref := range x.overflow {
		fn(ref)
	}
}

func indexHash[K text](x *refIndex, key K) uint64 {
	if x.hash != nil {
		return x.hash(string(key))
	}
	return fnv64a(key)
}

// FNV-1a, 64 and 32 bits (http://www.isthe.com/chongo/tech/comp/fnv/).
const (
	fnv64Offset = 14695981039346656037
	fnv64Prime  = 1099511628211
	fnv32Offset = 2166136261
	fnv32Prime  = 16777619
)

func fnv64a[K text](key K) uint64 {
	h := uint64(fnv64Offset)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnv64Prime
	}
	return h
}

func fnv32a[K text](key K) uint32 {
	h := uint32(fnv32Offset)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= fnv32Prime
	}
	return h
}
