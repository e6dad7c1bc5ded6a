package frontdoor

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// FuzzAdmitClaim runs any claim request, from any user, through the
// funnel's stages 1 to 6 (validation included): it never panics, a refusal
// is a status error, and what the door would queue for the store is a claim
// the store's own validation takes (a claim the store refused as invalid
// would have cost a batch slot for an answer the door could have given).
func FuzzAdmitClaim(f *testing.F) {
	clock := &testClock{now: t0}
	d, err := New(Config{ID: "f1", AuthMode: AuthInsecureHeader, Now: clock.Now}, newFakeStore(), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(d.Close)
	openCampaign(d, 2, 0, 3)
	f.Add("alice", "c", "i", "req-1", uint32(1), false)
	f.Add("bob", "c", "i", "", uint32(0), true)
	f.Add("carol", "c", "ghost", "r", uint32(70000), false)
	f.Add("d\x00ve", "c\xff", "", "\uFFFD", uint32(4), true)
	f.Fuzz(func(t *testing.T, user, campaign, item, requestID string, quantity uint32, retry bool) {
		c := caller{userID: user}
		req := &pb.FrontDoorClaimRequest{CampaignId: campaign, ItemId: item, RequestId: requestID, Quantity: quantity, Retry: retry}
		p, replay, err := d.admitClaim(&c, req, clock.Now())
		switch {
		case err != nil:
			if _, ok := status.FromError(err); !ok {
				t.Fatalf("refusal %v is not a status error", err)
			}
			return
		case replay != nil:
			return
		}
		if err := pb.ValidateClaim(&p.claim); err != nil {
			t.Fatalf("the door would send the store a claim it refuses: %v (%v)", err, &p.claim)
		}
		if p.claim.UserId != user || p.claim.CampaignId != campaign || p.claim.ItemId != item {
			t.Fatalf("queued %v for a request of %q on %q/%q", &p.claim, user, campaign, item)
		}
	})
}
