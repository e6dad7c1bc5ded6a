package frontdoor

import (
	"hash/maphash"
	"sync"
)

// lruShards is how many independently locked parts a boundedMap has: enough
// that goroutines on different keys rarely wait for each other.
const lruShards = 64

// boundedMap is a map with a hard cap on its entries: once full, adding a
// key evicts the least recently used one of its shard. Every per-key
// structure of the front door (buckets per IP and per user, verified
// tokens, limit hints) lives in one, so a crowd of new keys costs bounded
// memory, never an out-of-memory crash. It is safe for concurrent use.
type boundedMap[K comparable, V any] struct {
	seed   maphash.Seed
	shards [lruShards]lruShard[K, V]
}

type lruShard[K comparable, V any] struct {
	mu      sync.Mutex
	entries map[K]*lruEntry[K, V]
	head    lruEntry[K, V] // sentinel: head.next is the most recently used
	max     int
	_       [40]byte // keep shards on separate cache lines
}

type lruEntry[K comparable, V any] struct {
	key        K
	val        V
	prev, next *lruEntry[K, V]
}

// newBoundedMap returns a map holding at most about maxEntries keys (at
// least one per shard).
func newBoundedMap[K comparable, V any](maxEntries int) *boundedMap[K, V] {
	m := &boundedMap[K, V]{seed: maphash.MakeSeed()}
	perShard := max(1, maxEntries/lruShards)
	for i := range m.shards {
		s := &m.shards[i]
		s.entries = make(map[K]*lruEntry[K, V])
		s.head.next, s.head.prev = &s.head, &s.head
		s.max = perShard
	}
	return m
}

func (m *boundedMap[K, V]) shard(k K) *lruShard[K, V] {
	return &m.shards[maphash.Comparable(m.seed, k)%lruShards]
}

// update runs fn on the value of k under the shard's lock and marks k
// recently used. If k is absent and create is set, fn gets a zero value
// that is then kept (evicting the least recently used key if the shard is
// full); if k is absent and create is not set, fn is not called. fn must
// not call the map. update reports whether fn ran.
func (m *boundedMap[K, V]) update(k K, create bool, fn func(v *V)) bool {
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	switch {
	case ok:
		s.unlink(e)
	case !create:
		return false
	default:
		if len(s.entries) >= s.max {
			old := s.head.prev
			s.unlink(old)
			delete(s.entries, old.key)
			*old = lruEntry[K, V]{} // reuse the evicted entry's memory
			e = old
		} else {
			e = new(lruEntry[K, V])
		}
		e.key = k
		s.entries[k] = e
	}
	s.pushFront(e)
	fn(&e.val)
	return true
}

// remove deletes k.
func (m *boundedMap[K, V]) remove(k K) {
	s := m.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[k]; ok {
		s.unlink(e)
		delete(s.entries, k)
	}
}

// len counts the entries (shard by shard, so not a snapshot).
func (m *boundedMap[K, V]) len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}

// capacity is the most entries the map holds.
func (m *boundedMap[K, V]) capacity() int { return m.shards[0].max * lruShards }

func (s *lruShard[K, V]) unlink(e *lruEntry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (s *lruShard[K, V]) pushFront(e *lruEntry[K, V]) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}
