package rpc

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// FuzzRequestRefs: the store's validators of the IDs a request names refuse
// with INVALID_ARGUMENT and take only IDs flashdpb.ValidateID takes; never
// a panic.
func FuzzRequestRefs(f *testing.F) {
	f.Add("c", "i", "u", "r")
	f.Add("", "i", "u", "")
	f.Add("c\x00", "\xff", "\uFFFD", "r")
	f.Fuzz(func(t *testing.T, campaignID, itemID, userID, requestID string) {
		check := func(what string, err error, ids ...string) {
			t.Helper()
			valid := true
			for _, id := range ids {
				valid = valid && pb.ValidateID("id", id) == nil
			}
			switch {
			case err == nil && !valid:
				t.Fatalf("%s took %q", what, ids)
			case err != nil && valid:
				t.Fatalf("%s refused valid IDs %q: %v", what, ids, err)
			case err != nil && status.Code(err) != codes.InvalidArgument:
				t.Fatalf("%s refused with %v, want INVALID_ARGUMENT", what, err)
			}
		}
		check("validateItemRef", validateItemRef(campaignID, itemID), campaignID, itemID)
		if requestID == "" {
			check("validateUserRef", validateUserRef(campaignID, userID, ""), campaignID, userID)
		} else {
			check("validateUserRef", validateUserRef(campaignID, userID, requestID), campaignID, userID, requestID)
		}
	})
}
