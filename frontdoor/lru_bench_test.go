package frontdoor

import (
	"strconv"
	"testing"
)

// BenchmarkBoundedMapChurn inserts a new key per operation into a full
// map (the limit hints of a sale where every claim is a new user's).
func BenchmarkBoundedMapChurn(b *testing.B) {
	m := newBoundedMap[userItemKey, limitHint](1 << 18)
	keys := make([]userItemKey, 1<<20)
	for i := range keys {
		keys[i] = userItemKey{"user-" + strconv.Itoa(i), "campaign", "item"}
	}
	for i := range 1 << 18 {
		m.update(keys[i], true, func(*limitHint) {})
	}
	b.ResetTimer()
	for i := range b.N {
		m.update(keys[i%len(keys)], true, func(v *limitHint) { v.quantity++ })
	}
}
