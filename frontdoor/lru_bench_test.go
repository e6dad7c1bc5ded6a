package frontdoor

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// BenchmarkLimitHintsChurn learns a grant of a new user per operation
// into full limit hints, then checks a user who has one: the hints' work in
// a sale where nearly every claim is a new user's.
func BenchmarkLimitHintsChurn(b *testing.B) {
	h := newLimitHints(DefaultTrackedUsersMax)
	keys := make([]userItemKey, 1<<20)
	for i := range keys {
		keys[i] = userItemKey{"user-" + strconv.Itoa(i), "campaign", "item"}
	}
	claim := &pb.Claim{Id: 1, Quantity: 1, RequestId: "r", Deadline: timestamppb.New(t0.Add(time.Minute))}
	for i := range DefaultTrackedUsersMax {
		h.learnGrant(keys[i], claim, t0)
	}
	b.ResetTimer()
	for i := range b.N {
		k := keys[i%len(keys)]
		h.learnGrant(k, claim, t0)
		if _, reached := h.check(k, "other", 1, 1, t0); !reached {
			b.Fatal("a user at the limit of 1 was not refused")
		}
	}
}
