package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestRefIndexAgainstAMap applies random inserts, replacements and removals
// (forgotten refs) to a refIndex and to a map, with real and with colliding
// hashes, and compares them after every step.
func TestRefIndexAgainstAMap(t *testing.T) {
	for name, hash := range map[string]func(string) uint64{
		"real hash":   nil,
		"all collide": func(string) uint64 { return 7 << 56 },
		"few hashes":  func(k string) uint64 { return uint64(len(k)%3) * 0x9e3779b97f4a7c15 },
	} {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			keyOf := make(map[uint64]string) // what the records would hold
			gone := make(map[uint64]bool)
			x := newRefIndex(func(ref uint64) string { return keyOf[ref] })
			x.hash = hash
			x.gone = func(ref uint64) bool { return gone[ref] }
			model := make(map[string]uint64)
			nextRef := uint64(1)
			for step := range 3000 {
				key := fmt.Sprint("k", rng.IntN(300))
				ref, h, ok := findRef(x, key)
				if want, wantOK := model[key]; ok != wantOK || ref != want || h != hashKey(x, key) {
					t.Fatalf("step %d: find(%s) = %d %v, want %d %v", step, key, ref, ok, want, wantOK)
				}
				keyOf[nextRef] = key
				switch {
				case !ok:
					x.insert(h, nextRef)
					model[key] = nextRef
				case rng.IntN(2) == 0:
					x.replace(h, ref, nextRef)
					model[key] = nextRef
				default:
					gone[ref] = true
					x.forget()
					delete(model, key)
				}
				nextRef++
				if x.len() != len(model) {
					t.Fatalf("step %d: len %d, want %d", step, x.len(), len(model))
				}
			}
			seen := 0
			x.each(func(ref uint64) {
				if model[keyOf[ref]] != ref {
					t.Fatalf("each: stale ref %d for %s", ref, keyOf[ref])
				}
				seen++
			})
			if seen != len(model) {
				t.Fatalf("each saw %d entries, want %d", seen, len(model))
			}
			mustPanic(t, "does not hold", func() { x.replace(hashKey(x, "k1"), 1<<40, 1) })
		})
	}
}

// TestRefIndexReclaimsForgottenSlots keeps a few hundred live entries while
// forgetting the oldest on every insert, as a full idempotency store does,
// and expects the shards to stay the size those few need: forgotten slots
// are reused or purged instead of growing the index.
func TestRefIndexReclaimsForgottenSlots(t *testing.T) {
	const live, inserts = 300, 200_000
	floor := uint64(1) // refs below it are gone
	x := newRefIndex(func(ref uint64) string { return fmt.Sprint("k", ref) })
	x.gone = func(ref uint64) bool { return ref < floor }
	for ref := uint64(1); ref <= inserts; ref++ {
		if ref > live {
			floor++
			x.forget()
		}
		key := fmt.Sprint("k", ref)
		_, h, ok := findRef(x, key)
		if ok {
			t.Fatalf("%s found before it was inserted", key)
		}
		x.insert(h, ref)
		if old := fmt.Sprint("k", floor-1); floor > 1 {
			if _, _, ok := findRef(x, old); ok {
				t.Fatalf("forgotten %s still found", old)
			}
		}
	}
	slots, seen := 0, 0
	for i := range x.shards {
		slots += len(x.shards[i].slots)
	}
	x.each(func(ref uint64) {
		if ref < floor {
			t.Fatalf("each: gone ref %d", ref)
		}
		seen++
	})
	if x.len() != live || seen != live {
		t.Fatalf("len %d, each saw %d, want %d", x.len(), seen, live)
	}
	// 300 entries over 256 shards: a shard keeps a handful, in a table of
	// the minimum 8 or 16 slots, never the thousands 200,000 inserts would
	// take without reclaiming.
	if slots > refShards*4*refShardMinCap {
		t.Fatalf("%d slots for %d live entries", slots, live)
	}
	for ref := floor; ref <= inserts; ref++ {
		if got, _, ok := findRef(x, fmt.Sprint("k", ref)); !ok || got != ref {
			t.Fatalf("k%d: found %d %v", ref, got, ok)
		}
	}
}

// dropEntry deletes ref's entry outright, the way a bug would.
func dropEntry(x *refIndex, key string, ref uint64) {
	h := hashKey(x, key)
	sh := x.shard(h)
	sh.delete(sh.find(h, ref))
	sh.used--
	x.n--
}

func TestFifo(t *testing.T) {
	var q fifo[int]
	next, front := 0, 0
	push := func(n int) {
		for range n {
			if abs := q.push(next); abs != uint64(next) {
				t.Fatalf("push %d: absolute index %d", next, abs)
			}
			next++
		}
	}
	pop := func(n int) {
		for range n {
			if q.front() != front {
				t.Fatalf("front %d, want %d", q.front(), front)
			}
			q.pop()
			front++
		}
	}
	push(fifoChunkLen + 10)
	v := q.view()
	pop(fifoChunkLen + 5) // drops the first chunk
	push(2 * fifoChunkLen)
	if q.len() != next-front || q.at(uint64(front+7)) != front+7 {
		t.Fatalf("len %d, at %d: %d", q.len(), front+7, q.at(uint64(front+7)))
	}
	var seen []int
	v.each(func(x int) bool { seen = append(seen, x); return true })
	if len(seen) != fifoChunkLen+10 || seen[0] != 0 || seen[len(seen)-1] != fifoChunkLen+9 {
		t.Fatalf("the view changed: %d elements from %d", len(seen), seen[0])
	}
	pop(q.len())
	mustPanic(t, "empty", func() { q.pop() })
	mustPanic(t, "out of range", func() { q.at(0) })
}

func TestClaimTableCopiesSharedChunksOnWrite(t *testing.T) {
	var table claimTable
	it := &item{campaign: &campaign{}}
	it.number = table.addItem(it)
	for n := range claimChunkLen + 1 {
		addClaim(&table, claimRecord{item: it.number, quantity: 1, state: ClaimReserved}, fmt.Sprint("r", n), fmt.Sprint("u", n))
	}
	v := table.view()
	table.mutable(1).state = ClaimSettled
	table.mutable(claimChunkLen + 1).state = ClaimReleased
	addClaim(&table, claimRecord{item: it.number, quantity: 1, state: ClaimReserved}, "new", "user")
	if v.get(1).state != ClaimReserved || v.get(claimChunkLen+1).state != ClaimReserved || v.len() != claimChunkLen+1 {
		t.Fatal("a write reached the view")
	}
	last := table.get(claimChunkLen + 2)
	if table.get(1).state != ClaimSettled || table.requestID(last) != "new" || table.userID(last) != "user" {
		t.Fatal("the write was lost")
	}
	if first := v.get(1); v.requestID(first) != "r0" || v.userID(first) != "u0" || v.item(first) != it {
		t.Fatalf("the view reads claim 1 as %q %q", v.requestID(first), v.userID(first))
	}
}

func TestKeyArenaStartsNewChunks(t *testing.T) {
	var arena keyArena
	long := make([]byte, idMaxBytes)
	var positions []uint64
	for range 2 * keyArenaChunkLen / (2 * idMaxBytes) {
		positions = append(positions, addKeys(&arena, long, long))
	}
	if len(arena.chunks) < 2 {
		t.Fatalf("%d chunks, want a second one", len(arena.chunks))
	}
	for _, pos := range positions {
		if pos%keyArenaChunkLen+2*idMaxBytes > keyArenaChunkLen {
			t.Fatalf("keys at %d cross a chunk boundary", pos)
		}
	}
	if arena.text(positions[0], 0) != "" {
		t.Fatal("empty text")
	}
}
