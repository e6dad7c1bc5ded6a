package frontdoor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/frontdoor/token"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

func entryAs(user, requestID string) *pb.ClaimManyEntry {
	return &pb.ClaimManyEntry{Claim: claimReq(requestID), InsecureUserId: user}
}

// outcomeErr turns a ClaimMany outcome's status back into the error a
// Claim call would have returned.
func outcomeErr(o *pb.ClaimManyOutcome) error {
	return o.GetError().Err()
}

// Every claim of a call is answered in order, as its own Claim call would
// be, and the granted ones reach the store together.
func TestClaimManyAnswersEachClaimInOrder(t *testing.T) {
	store := newFakeStore()
	store.addItem("c", "i", 3, 1)
	d, _ := newTestDoor(t, store, nil)
	openCampaign(d, 1, 0, 1)

	req := &pb.ClaimManyRequest{Claims: []*pb.ClaimManyEntry{
		entryAs("u1", "r1"),
		{Claim: claimReq("r2")}, // no caller: the call's metadata has none either
		entryAs("u2", "r3"),
		{Claim: &pb.FrontDoorClaimRequest{CampaignId: "c", ItemId: "no such item"}, InsecureUserId: "u3"},
		entryAs("u1", "r4"), // the same user again: over the per-user limit of 1 once r1 is granted
		entryAs("u4", "r5"),
		entryAs("u5", "r6"), // the fourth grant of 3 units
	}}
	resp, err := d.ClaimMany(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	out := resp.GetOutcomes()
	if len(out) != len(req.Claims) {
		t.Fatalf("%d outcomes for %d claims", len(out), len(req.Claims))
	}
	granted := 0
	for i, o := range out {
		if o.GetClaim() != nil {
			granted++
			if o.GetClaim().GetRequestId() != req.Claims[i].GetClaim().GetRequestId() {
				t.Errorf("outcome %d is the claim of request %s", i, o.GetClaim().GetRequestId())
			}
		}
	}
	wantRefusal(t, outcomeErr(out[1]), codes.Unauthenticated, reasonMissingToken)
	wantRefusal(t, outcomeErr(out[3]), codes.NotFound, "ITEM_NOT_FOUND")
	if granted != 3 {
		t.Fatalf("granted %d, want the 3 units in stock", granted)
	}
	for _, i := range []int{0, 2} {
		if out[i].GetClaim() == nil {
			t.Errorf("claim %d refused: %v", i, outcomeErr(out[i]))
		}
	}
	// r4 (u1's second) and the claim past the stock are refused by the store.
	refused := map[string]int{}
	for _, i := range []int{4, 5, 6} {
		if err := outcomeErr(out[i]); err != nil {
			refused[reasonOf(err)]++
		}
	}
	if refused["LIMIT_REACHED"] != 1 || refused["SOLD_OUT"] != 1 {
		t.Fatalf("store refusals %v, want one LIMIT_REACHED and one SOLD_OUT", refused)
	}
	if n := store.batchCount(); n > 2 {
		t.Fatalf("the call's 5 admitted claims took %d store batches", n)
	}
}

// After a sell-out a whole call is answered from the caches: no store
// traffic, and the refusal is the one shared status (no allocation per
// claim for it).
func TestClaimManySoldOutFromCaches(t *testing.T) {
	store := newFakeStore()
	d, _ := newTestDoor(t, store, nil)
	openCampaign(d, 1, 0, 1)
	d.catalog.updateItem(soldOutItem(), 5)
	req := &pb.ClaimManyRequest{}
	for i := range 100 {
		req.Claims = append(req.Claims, entryAs(userName(i), fmt.Sprintf("r%d", i)))
	}
	resp, err := d.ClaimMany(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range resp.GetOutcomes() {
		if o.GetError() != staticStatuses[errSoldOut] {
			t.Fatalf("claim %d: %v, want the shared SOLD_OUT status", i, outcomeErr(o))
		}
	}
	if n := store.batchCount(); n != 0 {
		t.Fatalf("%d store batches after the sell-out", n)
	}
	if got := counterValue(d.m.cacheSoldOut); got != 100 {
		t.Fatalf("sold-out cache counted %v, want 100", got)
	}
}

// A call with more claims than ManyMax is refused whole.
func TestClaimManyTooMany(t *testing.T) {
	d, _ := newTestDoor(t, newFakeStore(), nil)
	req := &pb.ClaimManyRequest{Claims: make([]*pb.ClaimManyEntry, ManyMax+1)}
	_, err := d.ClaimMany(context.Background(), req)
	wantRefusal(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
}

// An entry names its caller as Claim's metadata would: a token door
// believes only the entry's bearer token, never its insecure user ID; an
// entry without credentials falls back on the call's.
func TestClaimManyCallerPerEntry(t *testing.T) {
	key, _ := token.NewHMACKey([]byte(strings.Repeat("k", 32)))
	store := newFakeStore()
	store.addItem("c", "i", 10, 1)
	d, _ := newTestDoor(t, store, func(c *Config) { c.AuthMode, c.TokenKey = AuthToken, key })
	openCampaign(d, 1, 0, 1)
	alice, _ := key.Issue("alice", time.Hour, t0)
	bob, _ := key.Issue("bob", time.Hour, t0)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdAuthorization, "Bearer "+bob))
	resp, err := d.ClaimMany(ctx, &pb.ClaimManyRequest{Claims: []*pb.ClaimManyEntry{
		{Claim: claimReq("r1"), Authorization: "Bearer " + alice},
		{Claim: claimReq("r2"), InsecureUserId: "mallory"},
		{Claim: claimReq("r3")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := resp.GetOutcomes()
	if u := out[0].GetClaim().GetUserId(); u != "alice" {
		t.Errorf("entry with alice's token claimed as %q (%v)", u, outcomeErr(out[0]))
	}
	wantRefusal(t, outcomeErr(out[1]), codes.Unauthenticated, reasonMissingToken)
	if u := out[2].GetClaim().GetUserId(); u != "bob" {
		t.Errorf("entry without credentials claimed as %q, want the call's bob (%v)", u, outcomeErr(out[2]))
	}
}

// The per-IP limit counts an entry's client_ip only on a door that trusts
// its callers' client IP header; otherwise every entry counts as the peer.
func TestClaimManyClientIP(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			store := newFakeStore()
			store.addItem("c", "i", 10, 1)
			d, _ := newTestDoor(t, store, func(c *Config) {
				if trusted {
					c.ClientIPHeader = "x-forwarded-for"
				}
			})
			openCampaign(d, 1, 0, 1)
			d.applyConfig(FunnelConfig{Version: 1, PerIPRate: 1})
			ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.9"), Port: 4000}})
			var req pb.ClaimManyRequest
			for i := range 3 {
				e := entryAs(userName(i), fmt.Sprintf("r%d", i))
				e.ClientIp = fmt.Sprintf("192.0.2.%d", i+1)
				req.Claims = append(req.Claims, e)
			}
			resp, err := d.ClaimMany(ctx, &req)
			if err != nil {
				t.Fatal(err)
			}
			limited := 0
			for _, o := range resp.GetOutcomes() {
				if reasonOf(outcomeErr(o)) == reasonRateLimited {
					limited++
				}
			}
			if want := map[bool]int{false: 2, true: 0}[trusted]; limited != want {
				t.Fatalf("%d entries per-IP limited, want %d", limited, want)
			}
		})
	}
}

// The draws of one DrawMany call go to the store in one batch, each with
// its own caller and answer, in order; a draw the door can refuse by
// itself is answered without the store.
func TestDrawManyAnswersEachDrawInOrder(t *testing.T) {
	store := newCardFakeStore()
	d, _ := newTestDoor(t, store, nil)
	openCardCampaign(d)
	draw := func(user, requestID string) *pb.DrawManyEntry {
		return &pb.DrawManyEntry{Draw: &pb.FrontDoorDrawCardRequest{CampaignId: "cards", RequestId: requestID}, InsecureUserId: user}
	}
	req := &pb.DrawManyRequest{Draws: []*pb.DrawManyEntry{
		draw("ann", "r1"),
		{Draw: &pb.FrontDoorDrawCardRequest{CampaignId: "cards", RequestId: "r2"}}, // no caller
		draw("bob", "r3"),
		draw("ann", "r4"), // ann's second draw: she has one chance (the store refuses)
		draw("cid", "r5"),
	}}
	resp, err := d.DrawMany(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	out := resp.GetOutcomes()
	if len(out) != len(req.Draws) {
		t.Fatalf("%d outcomes for %d draws", len(out), len(req.Draws))
	}
	for _, i := range []int{0, 2, 4} {
		want := req.Draws[i]
		if got := out[i].GetDraw(); got.GetRequestId() != want.GetDraw().GetRequestId() || got.GetHolder().GetUserId() != want.GetInsecureUserId() {
			t.Errorf("draw %d: %v %v, want the draw of %s", i, got, out[i].GetError().Err(), want.GetInsecureUserId())
		}
	}
	wantRefusal(t, out[1].GetError().Err(), codes.Unauthenticated, reasonMissingToken)
	wantRefusal(t, out[3].GetError().Err(), codes.FailedPrecondition, "NO_DRAWS_LEFT")
	if store.drawBatches != 1 || store.draws != 4 {
		t.Fatalf("%d draws in %d store batches, want 4 in 1", store.draws, store.drawBatches)
	}
	// Ann again: the door remembers she has no draw left.
	resp, err = d.DrawMany(context.Background(), &pb.DrawManyRequest{Draws: []*pb.DrawManyEntry{draw("ann", "r6")}})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, resp.GetOutcomes()[0].GetError().Err(), codes.FailedPrecondition, "NO_DRAWS_LEFT")
	if store.draws != 4 {
		t.Errorf("the store saw %d draws, want 4: the door answered ann's last", store.draws)
	}
	if _, err := d.DrawMany(context.Background(), &pb.DrawManyRequest{Draws: make([]*pb.DrawManyEntry, ManyMax+1)}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a call of %d draws: %v, want INVALID_ARGUMENT", ManyMax+1, err)
	}
}

// uncomparableError is an error whose dynamic type cannot be a map key.
type uncomparableError struct{ parts []string }

func (e uncomparableError) Error() string { return fmt.Sprint(e.parts) }

// Any error can become a call status, even one that cannot be compared.
func TestCallStatusOfAnyError(t *testing.T) {
	d, _ := newTestDoor(t, newFakeStore(), nil)
	if s := d.callStatus(uncomparableError{[]string{"x"}}); codes.Code(s.GetCode()) != codes.Unknown {
		t.Fatalf("status %v, want UNKNOWN", s)
	}
	if d.callStatus(errSoldOut) != staticStatuses[errSoldOut] {
		t.Fatal("sold out not answered with the shared status")
	}
}
