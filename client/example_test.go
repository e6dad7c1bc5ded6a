package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/rpc/flashdpb"
)

// A service lets its users claim through the front doors. Refusals are
// errors to test with errors.Is; nothing needs retrying by hand.
func Example() {
	addr, stop := startExampleFrontDoor(2) // a stand-in front door with 2 lanterns
	defer stop()

	ctx := context.Background()
	c, err := client.New(ctx, []string{addr})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for _, user := range []string{"alice", "bob", "alice", "carol"} {
		claim, err := c.Claim(ctx, "spring", "lantern", client.AsUser(user))
		switch {
		case errors.Is(err, client.ErrSoldOut):
			fmt.Printf("%s: sold out\n", user)
		case errors.Is(err, client.ErrLimitReached):
			fmt.Printf("%s: already has one\n", user)
		case client.IsRetryable(err):
			fmt.Printf("%s: busy, try again in a moment\n", user)
		case err != nil:
			fmt.Printf("%s: %v\n", user, err)
		default:
			fmt.Printf("%s: claim %d, reserved\n", user, claim.GetId())
		}
	}
	// Output:
	// alice: claim 1, reserved
	// bob: claim 2, reserved
	// alice: already has one
	// carol: sold out
}

// A claim whose answer was lost (the user's screen timed out) is resumed
// with its request ID: the store applies one request ID at most once, so
// the user gets the claim that was granted, never a second one. Resume
// also tells the front door the claim may already be granted, so that it
// asks the store even if the item has sold out since.
func ExampleResume() {
	addr, stop := startExampleFrontDoor(10)
	defer stop()
	ctx := context.Background()
	c, err := client.New(ctx, []string{addr})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	id := client.NewRequestID() // one logical claim
	first, err := c.Claim(ctx, "spring", "lantern", client.AsUser("dana"), client.RequestID(id))
	if err != nil {
		log.Fatal(err)
	}
	// ... the answer is lost on its way to the user, who presses again ...
	again, err := c.Claim(ctx, "spring", "lantern", client.AsUser("dana"), client.Resume(id))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same claim:", first.GetId() == again.GetId())
	// Output:
	// same claim: true
}

// A real service authenticates with the user's bearer token, bounds each
// claim with a deadline, and shows a countdown when the user's entry wave
// is not open yet.
func ExampleClient_Claim() {
	ctx := context.Background()
	tokens := client.TokenFunc(func(ctx context.Context) (string, error) {
		return "<a JWT whose sub is the user, from your identity provider>", nil
	})
	c, err := client.New(ctx, []string{"frontdoor-1:7301", "frontdoor-2:7301"},
		client.WithTokenSource(tokens),
		client.WithRetryBudget(0.1, 5), // at most ~10% retries on top of first tries
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	claim, err := c.Claim(ctx, "spring", "lantern")
	switch {
	case errors.Is(err, client.ErrNotEligible):
		fmt.Printf("your wave opens in %v\n", client.RetryAfter(err).Round(time.Second))
	case errors.Is(err, client.ErrSoldOut), errors.Is(err, client.ErrCampaignClosed):
		fmt.Println("too late")
	case client.IsRetryable(err):
		fmt.Println("busy, try again:", client.Reason(err))
	case err != nil:
		log.Print(err)
	case claim.GetState() == flashdpb.ClaimState_CLAIM_STATE_RESERVED:
		fmt.Printf("reserved until %v: pay to keep it\n", claim.GetDeadline().AsTime())
	}
}
