package flashdpb

import (
	"testing"
	"unicode/utf8"
)

// FuzzValidateClaim: any claim request is taken or refused with ErrBadID,
// never a panic, and a claim taken has four IDs of 1 to MaxIDBytes bytes
// of valid UTF-8 and a quantity of at least 1. (The ID rule itself is
// checked against the state machine's in fsm's FuzzValidID.)
func FuzzValidateClaim(f *testing.F) {
	f.Add("r1", "c", "i", "u", uint32(1))
	f.Add("", "c", "i", "u", uint32(1))
	f.Add("r1", "c\xff", "i", "u\x00", uint32(0))
	f.Add("r1", "c", "\u2028", "\uFFFD", uint32(1<<31))
	f.Fuzz(func(t *testing.T, requestID, campaignID, itemID, userID string, quantity uint32) {
		c := &ClaimRequest{RequestId: requestID, CampaignId: campaignID, ItemId: itemID, UserId: userID, Quantity: quantity}
		if err := ValidateClaim(c); err != nil {
			return
		}
		for _, id := range []string{requestID, campaignID, itemID, userID} {
			if id == "" || len(id) > MaxIDBytes || !utf8.ValidString(id) {
				t.Fatalf("took a claim with the id %q", id)
			}
		}
		if quantity == 0 {
			t.Fatal("took a claim of quantity 0")
		}
	})
}
