package fsm

import (
	"strconv"
	"time"
)

// Reason says why a command or a claim was refused; ReasonOK is success.
// Business refusals are normal results, never errors or panics. The numbers
// equal flashdpb.Reason's, so the API converts with a cast.
type Reason uint8

const (
	ReasonOK Reason = iota
	ReasonSoldOut
	ReasonLimitReached
	ReasonNotEligible      // the user's entry wave is not open yet
	ReasonCampaignClosed   // not open, not started, or ended
	ReasonCampaignNotFound //
	ReasonItemNotFound
	ReasonClaimNotFound
	ReasonInvalidArgument
	ReasonAlreadyExists
	ReasonInsufficientStock // stock removal larger than available
	ReasonAlreadySettled
	ReasonAlreadyReleased
	ReasonRequestIDReused // same request ID, different payload
	ReasonWrongCampaignKind
	ReasonNoDrawsLeft // the user has no draw chance left
	ReasonNoFullSet   // the user holds no full set of cards
	ReasonPoolEmpty   // every reward of the pool is given
	// ReasonCompensating: the claim's order is to be, or is being,
	// cancelled (TO_COMPENSATE, CANCELLING), so it cannot be marked as
	// ordering; once CANCELLING, not settled either.
	ReasonCompensating
	ReasonNotCompensating // MarkCancelling of a claim that is not to be compensated
)

// reasonNames are the API's names (flashdpb.Reason without its prefix), so
// logs and messages read the same on both sides.
var reasonNames = [...]string{
	ReasonOK:                "OK",
	ReasonSoldOut:           "SOLD_OUT",
	ReasonLimitReached:      "LIMIT_REACHED",
	ReasonNotEligible:       "NOT_ELIGIBLE",
	ReasonCampaignClosed:    "CAMPAIGN_CLOSED",
	ReasonCampaignNotFound:  "CAMPAIGN_NOT_FOUND",
	ReasonItemNotFound:      "ITEM_NOT_FOUND",
	ReasonClaimNotFound:     "CLAIM_NOT_FOUND",
	ReasonInvalidArgument:   "INVALID_ARGUMENT",
	ReasonAlreadyExists:     "ALREADY_EXISTS",
	ReasonInsufficientStock: "INSUFFICIENT_STOCK",
	ReasonAlreadySettled:    "ALREADY_SETTLED",
	ReasonAlreadyReleased:   "ALREADY_RELEASED",
	ReasonRequestIDReused:   "REQUEST_ID_REUSED",
	ReasonWrongCampaignKind: "WRONG_CAMPAIGN_KIND",
	ReasonNoDrawsLeft:       "NO_DRAWS_LEFT",
	ReasonNoFullSet:         "NO_FULL_SET",
	ReasonPoolEmpty:         "POOL_EMPTY",
	ReasonCompensating:      "COMPENSATING",
	ReasonNotCompensating:   "NOT_COMPENSATING",
}

// String returns the reason's API name, or "Reason(n)" for a number this
// version does not know.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Campaign is a read-only view of a campaign.
type Campaign struct {
	ID             string
	Kind           CampaignKind
	Name           string
	Start          time.Time
	End            time.Time // zero: no end
	PerUserLimit   uint32    // default for items that set none; 0 means 1 (one per user)
	WaveCount      uint32
	WaveInterval   time.Duration
	ReservationTTL time.Duration // zero: reservations never expire
	State          CampaignState
}

type CampaignKind uint8

const (
	KindUnknown CampaignKind = iota
	KindFlashSale
	KindCardCollect
)

type CampaignState uint8

const (
	StateUnknown CampaignState = iota
	StateDraft
	StateOpen
	StateClosed
)

// Item is a read-only view of an item's stock counters.
// Invariant: Available + Reserved + Sold == Total.
type Item struct {
	CampaignID   string
	ID           string
	Total        uint64
	Available    uint64
	Reserved     uint64
	Sold         uint64
	PerUserLimit uint32 // effective: the item's own, else the campaign's default
}

type ClaimState uint8

// A claim's states (DESIGN.md, "Orders in flight"). RESERVED, ORDERING,
// TO_COMPENSATE and CANCELLING hold the claim's stock as reserved; SETTLED
// holds it as sold; RELEASED has given it back. All but RELEASED count
// against the user's limit.
//
//	RESERVED --MarkOrdering--> ORDERING --Expire--> TO_COMPENSATE --MarkCancelling--> CANCELLING
//	RESERVED --Expire--> RELEASED
//	RESERVED, ORDERING, TO_COMPENSATE --Settle--> SETTLED
//	RESERVED, ORDERING, TO_COMPENSATE, CANCELLING --Release--> RELEASED
const (
	ClaimUnknown ClaimState = iota
	ClaimReserved
	ClaimSettled
	ClaimReleased
	ClaimOrdering     // reserved, and a settler may have placed its order
	ClaimToCompensate // ordering past its deadline: to be settled or its order cancelled
	ClaimCancelling   // a settler is cancelling its order; released next
	claimStates       // one past the last state
)

// Claim is a read-only view of one claim.
type Claim struct {
	ID         uint64 // dense, from 1, assigned in log order
	CampaignID string
	ItemID     string
	UserID     string
	Quantity   uint32
	State      ClaimState
	Created    time.Time
	Deadline   time.Time // zero: never expires
	RequestID  string
}

// Node is a cluster member's metadata replicated through the log (Raft's own
// configuration carries only ID, address and suffrage).
type Node struct {
	ID       string
	Region   string
	GRPCAddr string
	HTTPAddr string
}

// FrontDoorConfig is the replicated funnel configuration every front door
// follows. Version increases by one with every change.
type FrontDoorConfig struct {
	Version      uint64
	GlobalRate   float64
	PerUserRate  float64
	PerIPRate    float64
	DegradeLevel uint32
	DropFraction float64
	DegradeAuto  bool
}

// Result is what applying one log entry returns (through raft's
// ApplyFuture.Response). A claim batch has one Outcome per claim, in order;
// a draw batch one Outcome and one of Draws per draw, in order; every other
// command has exactly one Outcome, and sets the view it touched.
type Result struct {
	Outcomes []Outcome
	Campaign *Campaign
	Item     *Item
	Config   *FrontDoorConfig
	Expired  int // reservations an Expire command released
	// ToCompensate: ordering claims an Expire command found past their
	// deadline and kept, to be settled or their order cancelled.
	ToCompensate int

	Cards    *CardCollect // DefineCards, CloseAndSplit
	Holder   *CardHolder  // GrantDraws, DrawCard, RedeemSet: the user after it
	CardType string       // DrawCard: the type drawn
	Draws    []*Result    // DrawCardBatch: each draw's result as a DrawCard's, in order
	Reward   uint64       // RedeemSet: the reward's number, 1 to the pool size

	Leased        []Claim   // LeaseClaims: the claims leased, by claim ID
	LeaseDeadline time.Time // LeaseClaims: when their leases end
	Cursor        uint64    // LeaseClaims: the group's cursor after it

	// detail is what an idempotency record keeps beside the reason for a
	// replay: a draw's type position from 1, or a redemption's reward number.
	detail uint64
}

// Outcome is the result of one claim or one operation.
type Outcome struct {
	Reason  Reason
	Message string // detail for a refusal, for people
	Claim   Claim  // set for a granted claim, settle and release
}

// CardCollect is a read-only view of a card-collect campaign's cards.
type CardCollect struct {
	CampaignID      string
	Types           []CardType // in definition order
	SetTypes        []string   // one of each makes a full set
	RewardPool      uint64
	RewardsGiven    uint64
	PotCents        uint64
	DrawsPerUserMax uint64 // 0: no limit
	Holders         int    // users with draws or cards
	FullSetHolders  int    // users with at least one full set: the pot's shares, were it split now
	Split           bool   // CloseAndSplit has run
	Payouts         []Payout
}

// CardType is one card type with how many were issued.
type CardType struct {
	ID     string
	Weight uint64
	Cap    uint64 // 0: no cap
	Issued uint64
}

// CardHolder is a read-only view of one user's draws and cards.
type CardHolder struct {
	CampaignID   string
	UserID       string
	DrawsLeft    uint64
	DrawsGranted uint64
	Cards        []CardCount // every type, in definition order
	FullSets     uint64      // full sets the cards make
	Rewards      uint64      // sets redeemed
}

// CardCount is how many cards of one type a user holds.
type CardCount struct {
	TypeID string
	Count  uint64
}

// Payout is one full-set holder's share of the pot, in cents.
type Payout struct {
	UserID string
	Cents  uint64
}

// Stats counts what the state machine holds.
type Stats struct {
	Campaigns          int
	Items              int
	Claims             int
	IdempotencyRecords int
}
