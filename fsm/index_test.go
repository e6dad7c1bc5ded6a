package fsm

import (
	"fmt"
	"testing"
)

func TestRefIndexWithCollisions(t *testing.T) {
	for name, hash := range map[string]func(string) uint64{
		"real hash":   nil,
		"all collide": func(string) uint64 { return 7 },
		"two buckets": func(k string) uint64 { return uint64(len(k) % 2) },
	} {
		t.Run(name, func(t *testing.T) {
			keys := map[uint64]string{1: "alpha", 2: "beta", 3: "gamma", 4: "delta"}
			x := newRefIndex(func(ref uint64) string { return keys[ref] })
			x.hash = hash
			for ref := uint64(1); ref <= 4; ref++ {
				x.put(keys[ref], ref)
			}
			check := func(want map[string]uint64) {
				t.Helper()
				if x.len() != len(want) {
					t.Fatalf("len %d, want %d", x.len(), len(want))
				}
				for _, key := range keys {
					ref, ok := findRef(x, key)
					if wantRef, wantOK := want[key]; ok != wantOK || ref != wantRef {
						t.Fatalf("find(%s) = %d %v, want %d %v", key, ref, ok, wantRef, wantOK)
					}
					if ref2, _ := findRef(x, []byte(key)); ref2 != ref {
						t.Fatalf("find by bytes(%s) = %d, by string %d", key, ref2, ref)
					}
				}
			}
			check(map[string]uint64{"alpha": 1, "beta": 2, "gamma": 3, "delta": 4})
			x.remove("alpha", 1) // the first of its hash: later keys stay findable
			check(map[string]uint64{"beta": 2, "gamma": 3, "delta": 4})
			keys[5] = "gamma"
			x.put("gamma", 5) // replace
			check(map[string]uint64{"beta": 2, "gamma": 5, "delta": 4})
			keys[6] = "alpha"
			x.put("alpha", 6) // back, perhaps in another place
			check(map[string]uint64{"alpha": 6, "beta": 2, "gamma": 5, "delta": 4})
			x.remove("gamma", 5)
			x.remove("beta", 2)
			check(map[string]uint64{"alpha": 6, "delta": 4})
			mustPanic(t, "does not hold", func() { x.remove("delta", 99) })
		})
	}
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
	for n := range claimChunkLen + 1 {
		table.add(claimRecord{item: it, keys: fmt.Sprint(n), quantity: 1, state: ClaimReserved})
	}
	v := table.view()
	table.mutable(1).state = ClaimSettled
	table.mutable(claimChunkLen + 1).state = ClaimReleased
	table.add(claimRecord{item: it, keys: "new", quantity: 1, state: ClaimReserved})
	if v.get(1).state != ClaimReserved || v.get(claimChunkLen+1).state != ClaimReserved || v.len() != claimChunkLen+1 {
		t.Fatal("a write reached the view")
	}
	if table.get(1).state != ClaimSettled || table.get(claimChunkLen+2).keys != "new" {
		t.Fatal("the write was lost")
	}
}
