package fsm

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// Bounds of a card-collect definition and of one grant.
const (
	cardTypesMax         = 64
	cardWeightMax        = 1 << 32 // per type, so that no sum of weights overflows
	grantDrawsMax        = 1000    // draws one GrantDraws may give
	msgNoCards           = "the campaign has no card definition"
	msgNotCardCollect    = "cards are drawn only in card-collect campaigns"
	msgNoDrawsLeft       = "no draw chance left"
	msgCardsExhausted    = "every card type has reached its cap"
	msgNoFullSet         = "the user holds no full set"
	msgPoolEmpty         = "every reward of the pool has been given"
	msgDrawBatchTooLarge = "a draw batch holds at most 4096 draws"
)

// cardCollect is a card-collect campaign's cards, draws and rewards. It is
// beside the flash-sale state, not in it: claims never touch it.
type cardCollect struct {
	types           []cardType // definition order: the draw walks it
	setTypes        []int      // positions in types, ascending
	rewardPool      uint64
	rewardsGiven    uint64
	potCents        uint64
	drawsPerUserMax uint64
	split           bool
	payouts         []Payout // by user ID
	holders         map[string]*cardHolder
	fullSetHolders  int // holders with at least one full set: the pot's shares, were it split now
}

type cardType struct {
	id     string
	weight uint64
	cap    uint64 // 0: no cap
	issued uint64
}

type cardHolder struct {
	drawsLeft    uint64
	drawsGranted uint64
	cards        []uint64 // per type
	rewards      uint64
}

// fullSets is how many full sets h's cards make.
func (cc *cardCollect) fullSets(h *cardHolder) uint64 {
	n := uint64(math.MaxUint64)
	for _, t := range cc.setTypes {
		n = min(n, h.cards[t])
	}
	return n
}

func (cc *cardCollect) available(t *cardType) bool { return t.cap == 0 || t.issued < t.cap }

// pick chooses a type by weight among those not at their cap, from seed:
// splitmix64 of the seed, scaled to the total weight by a 128-bit multiply
// (a bias below 2^-30 at the weight bound), then a walk in definition
// order. The recipe is part of the log's meaning: it must never change.
func (cc *cardCollect) pick(seed uint64) (int, bool) {
	var total uint64
	for i := range cc.types {
		if cc.available(&cc.types[i]) {
			total += cc.types[i].weight
		}
	}
	if total == 0 {
		return 0, false
	}
	r, _ := bits.Mul64(splitmix64(seed), total)
	for i := range cc.types {
		t := &cc.types[i]
		if !cc.available(t) {
			continue
		}
		if r < t.weight {
			return i, true
		}
		r -= t.weight
	}
	panic("fsm: card pick ran past the total weight")
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (cc *cardCollect) view(campaignID string) CardCollect {
	v := CardCollect{
		CampaignID: campaignID, RewardPool: cc.rewardPool, RewardsGiven: cc.rewardsGiven, PotCents: cc.potCents,
		DrawsPerUserMax: cc.drawsPerUserMax, Holders: len(cc.holders), FullSetHolders: cc.fullSetHolders,
		Split: cc.split, Payouts: slices.Clone(cc.payouts),
	}
	for _, t := range cc.types {
		v.Types = append(v.Types, CardType{ID: t.id, Weight: t.weight, Cap: t.cap, Issued: t.issued})
	}
	for _, t := range cc.setTypes {
		v.SetTypes = append(v.SetTypes, cc.types[t].id)
	}
	return v
}

func (cc *cardCollect) holderView(campaignID, userID string, h *cardHolder) CardHolder {
	v := CardHolder{CampaignID: campaignID, UserID: userID}
	if h == nil {
		h = &cardHolder{cards: make([]uint64, len(cc.types))}
	}
	v.DrawsLeft, v.DrawsGranted, v.Rewards, v.FullSets = h.drawsLeft, h.drawsGranted, h.rewards, cc.fullSets(h)
	for i, t := range cc.types {
		v.Cards = append(v.Cards, CardCount{TypeID: t.id, Count: h.cards[i]})
	}
	return v
}

// cardCampaign finds a card-collect campaign with a definition, or says why
// there is none.
func (s *state) cardCampaign(campaignID, userID string, needUser bool) (*campaign, Reason, string) {
	switch {
	case !validID(campaignID):
		return nil, ReasonInvalidArgument, msgBadCampaignID
	case needUser && !validID(userID):
		return nil, ReasonInvalidArgument, msgBadUserID
	}
	c := s.campaigns[campaignID]
	switch {
	case c == nil:
		return nil, ReasonCampaignNotFound, msgCampaignNotFound
	case c.kind != KindCardCollect:
		return nil, ReasonWrongCampaignKind, msgNotCardCollect
	case c.cards == nil:
		return nil, ReasonInvalidArgument, msgNoCards
	}
	return c, ReasonOK, ""
}

// applyDefineCards gives a card-collect campaign in DRAFT its card types,
// set, reward pool and pot, once: they cannot change after.
func (s *state) applyDefineCards(b *fsmpb.DefineCards) *Result {
	if !validID(b.GetCampaignId()) {
		return refusal(ReasonInvalidArgument, msgBadCampaignID)
	}
	c := s.campaigns[b.GetCampaignId()]
	switch {
	case c == nil:
		return refusal(ReasonCampaignNotFound, msgCampaignNotFound)
	case c.kind != KindCardCollect:
		return refusal(ReasonWrongCampaignKind, msgNotCardCollect)
	case c.cards != nil:
		return refusal(ReasonAlreadyExists, "the campaign's cards are already defined")
	case c.state != StateDraft:
		return refusal(ReasonInvalidArgument, "cards are defined while the campaign is a draft")
	}
	cc, err := newCardCollect(b)
	if err != nil {
		return refusal(ReasonInvalidArgument, err.Error())
	}
	c.cards = cc
	s.changed = true
	v := cc.view(c.id)
	return &Result{Outcomes: []Outcome{{}}, Cards: &v}
}

// newCardCollect checks a definition and builds the state it defines.
func newCardCollect(b *fsmpb.DefineCards) (*cardCollect, error) {
	n := len(b.GetTypes())
	if n == 0 || n > cardTypesMax {
		return nil, fmt.Errorf("a campaign has 1 to %d card types, not %d", cardTypesMax, n)
	}
	cc := &cardCollect{
		rewardPool: b.GetRewardPool(), potCents: b.GetPotCents(), drawsPerUserMax: b.GetDrawsPerUserMax(),
		holders: make(map[string]*cardHolder),
	}
	position := make(map[string]int, n)
	for i, t := range b.GetTypes() {
		switch {
		case !validID(t.GetTypeId()):
			return nil, fmt.Errorf("card type ID must be 1 to 128 bytes of UTF-8 without control characters")
		case position[t.GetTypeId()] != 0:
			return nil, fmt.Errorf("card type %q is defined twice", t.GetTypeId())
		case t.GetWeight() == 0 || t.GetWeight() > cardWeightMax:
			return nil, fmt.Errorf("card type %q: weight must be 1 to %d", t.GetTypeId(), uint64(cardWeightMax))
		}
		position[t.GetTypeId()] = i + 1
		cc.types = append(cc.types, cardType{id: t.GetTypeId(), weight: t.GetWeight(), cap: t.GetCap()})
	}
	if len(b.GetSetTypes()) == 0 {
		return nil, fmt.Errorf("a full set needs at least one card type")
	}
	for _, id := range b.GetSetTypes() {
		p := position[id]
		if p == 0 {
			return nil, fmt.Errorf("set type %q is not a card type", id)
		}
		if slices.Contains(cc.setTypes, p-1) {
			return nil, fmt.Errorf("set type %q is named twice", id)
		}
		cc.setTypes = append(cc.setTypes, p-1)
	}
	slices.Sort(cc.setTypes)
	return cc, nil
}

// applyGrantDraws gives a user draw chances, within the per-user maximum.
func (s *state) applyGrantDraws(b *fsmpb.GrantDraws) *Result {
	c, reason, msg := s.cardCampaign(b.GetCampaignId(), b.GetUserId(), true)
	if reason != ReasonOK {
		return refusal(reason, msg)
	}
	cc := c.cards
	switch {
	case b.GetCount() == 0 || b.GetCount() > grantDrawsMax:
		return refusal(ReasonInvalidArgument, fmt.Sprintf("a grant gives 1 to %d draws", grantDrawsMax))
	case c.state == StateClosed || cc.split:
		return refusal(ReasonCampaignClosed, "campaign is closed")
	}
	h := cc.holders[b.GetUserId()]
	granted := uint64(b.GetCount())
	if h != nil {
		granted += h.drawsGranted
	}
	if cc.drawsPerUserMax != 0 && granted > cc.drawsPerUserMax {
		return refusal(ReasonLimitReached, fmt.Sprintf("a user is granted at most %d draws", cc.drawsPerUserMax))
	}
	if h == nil {
		h = &cardHolder{cards: make([]uint64, len(cc.types))}
		cc.holders[b.GetUserId()] = h
	}
	h.drawsGranted = granted
	h.drawsLeft = addCounter(h.drawsLeft, uint64(b.GetCount()))
	v := cc.holderView(c.id, b.GetUserId(), h)
	return &Result{Outcomes: []Outcome{{}}, Holder: &v}
}

// applyDrawCard spends one draw chance for one card chosen by weight with
// the command's seed; a type at its cap is passed over.
func (s *state) applyDrawCard(b *fsmpb.DrawCard, seed uint64) *Result {
	c, reason, msg := s.cardCampaign(b.GetCampaignId(), b.GetUserId(), true)
	if reason != ReasonOK {
		return refusal(reason, msg)
	}
	cc := c.cards
	h := cc.holders[b.GetUserId()]
	switch {
	case !c.openAt(s.clock) || cc.split:
		return refusal(ReasonCampaignClosed, msgCampaignClosed)
	case s.clock < c.waveOpensAt(entryWave(b.GetUserId(), c.waveCount)):
		return refusal(ReasonNotEligible, msgNotEligible)
	case h == nil || h.drawsLeft == 0:
		return refusal(ReasonNoDrawsLeft, msgNoDrawsLeft)
	}
	t, ok := cc.pick(seed)
	if !ok {
		return refusal(ReasonSoldOut, msgCardsExhausted)
	}
	h.drawsLeft--
	hadSet := cc.fullSets(h) > 0
	h.cards[t] = addCounter(h.cards[t], 1)
	if !hadSet && cc.fullSets(h) > 0 {
		cc.fullSetHolders++
	}
	cc.types[t].issued = addCounter(cc.types[t].issued, 1)
	v := cc.holderView(c.id, b.GetUserId(), h)
	return &Result{Outcomes: []Outcome{{}}, Holder: &v, CardType: cc.types[t].id, detail: uint64(t) + 1}
}

// drawsPerBatchMax bounds the draws of one DrawCardBatch command.
const drawsPerBatchMax = 4096

// drawSeedStep is SplitMix64's increment: the seed of a batch's draw i is
// the command's seed plus i steps (fsmpb.DrawCardBatch).
const drawSeedStep = 0x9e3779b97f4a7c15

// drawSeed is the seed of the draw at position i of a batch stamped seed.
func drawSeed(seed uint64, i int) uint64 { return seed + uint64(i)*drawSeedStep }

// applyDrawCardBatch applies many draws in order, each exactly as a
// DRAW_CARD command with its request ID and seed drawSeed(seed, i) would be
// (idempotency, refusals and all), and answers one result per draw. A
// batch above drawsPerBatchMax is refused as a whole, every draw with
// INVALID_ARGUMENT and nothing applied.
func (s *state) applyDrawCardBatch(b *fsmpb.DrawCardBatch, seed uint64) *Result {
	draws := b.GetDraws()
	res := &Result{Outcomes: make([]Outcome, len(draws)), Draws: make([]*Result, len(draws))}
	if len(draws) > drawsPerBatchMax {
		for i := range draws {
			res.Draws[i] = refusal(ReasonInvalidArgument, msgDrawBatchTooLarge)
			res.Outcomes[i] = res.Draws[i].Outcomes[0]
		}
		return res
	}
	for i, d := range draws {
		r := s.applyOperation(&fsmpb.Command{
			Type: fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD, Seed: drawSeed(seed, i), RequestId: d.GetRequestId(),
			DrawCard: &fsmpb.DrawCard{CampaignId: d.GetCampaignId(), UserId: d.GetUserId()},
		})
		res.Draws[i], res.Outcomes[i] = r, r.Outcomes[0]
	}
	return res
}

// applyRedeemSet spends one card of each set type for one reward, while the
// pool lasts.
func (s *state) applyRedeemSet(b *fsmpb.RedeemSet) *Result {
	c, reason, msg := s.cardCampaign(b.GetCampaignId(), b.GetUserId(), true)
	if reason != ReasonOK {
		return refusal(reason, msg)
	}
	cc := c.cards
	h := cc.holders[b.GetUserId()]
	switch {
	case !c.openAt(s.clock) || cc.split:
		return refusal(ReasonCampaignClosed, msgCampaignClosed)
	case cc.rewardsGiven >= cc.rewardPool:
		return refusal(ReasonPoolEmpty, msgPoolEmpty)
	case h == nil || cc.fullSets(h) == 0:
		return refusal(ReasonNoFullSet, msgNoFullSet)
	}
	for _, t := range cc.setTypes {
		h.cards[t]--
	}
	if cc.fullSets(h) == 0 {
		cc.fullSetHolders--
	}
	h.rewards++
	cc.rewardsGiven++
	v := cc.holderView(c.id, b.GetUserId(), h)
	return &Result{Outcomes: []Outcome{{}}, Holder: &v, Reward: cc.rewardsGiven, detail: cc.rewardsGiven}
}

// applyCloseAndSplit closes the campaign and splits the pot equally among
// the users who hold at least one full set then, one share each. The share
// is pot / holders cents, rounded down; the remainder (pot mod holders, less
// than one cent per holder) goes one cent each to the first holders in
// ascending user ID order (byte order). With no holder the pot is not paid
// out. Running it again changes nothing and answers the same payouts.
func (s *state) applyCloseAndSplit(b *fsmpb.CloseAndSplit) *Result {
	c, reason, msg := s.cardCampaign(b.GetCampaignId(), "", false)
	if reason != ReasonOK {
		return refusal(reason, msg)
	}
	cc := c.cards
	if !cc.split {
		c.state = StateClosed
		cc.split = true
		cc.payouts = splitPot(cc)
		s.changed = true
	}
	cv, v := c.view(), cc.view(c.id)
	return &Result{Outcomes: []Outcome{{}}, Campaign: &cv, Cards: &v}
}

func splitPot(cc *cardCollect) []Payout {
	var users []string
	for user, h := range cc.holders {
		if cc.fullSets(h) > 0 {
			users = append(users, user)
		}
	}
	slices.Sort(users) // map order decides nothing
	if len(users) == 0 {
		return nil
	}
	n := uint64(len(users))
	share, remainder := cc.potCents/n, cc.potCents%n
	payouts := make([]Payout, len(users))
	for i, user := range users {
		payouts[i] = Payout{UserID: user, Cents: share}
		if uint64(i) < remainder {
			payouts[i].Cents++
		}
	}
	return payouts
}

// sortedHolders returns a card campaign's user IDs in byte order.
func (cc *cardCollect) sortedHolders() []string {
	users := make([]string, 0, len(cc.holders))
	for user := range cc.holders {
		users = append(users, user)
	}
	slices.SortFunc(users, strings.Compare)
	return users
}

// checkCards checks a card campaign: caps, the conservation of cards and
// draws, the pool, and the split.
func (s *state) checkCards(c *campaign) error {
	cc := c.cards
	if c.kind != KindCardCollect {
		return fmt.Errorf("campaign %q: cards in a campaign of kind %d", c.id, c.kind)
	}
	held := make([]uint64, len(cc.types))
	var rewards uint64
	fullSetHolders := 0
	for _, user := range cc.sortedHolders() {
		h := cc.holders[user]
		if len(h.cards) != len(cc.types) {
			return fmt.Errorf("campaign %q: user %q holds %d card counts for %d types", c.id, user, len(h.cards), len(cc.types))
		}
		drawn := h.rewards * uint64(len(cc.setTypes))
		for i, n := range h.cards {
			held[i] += n
			drawn += n
		}
		if h.drawsLeft+drawn != h.drawsGranted || (cc.drawsPerUserMax != 0 && h.drawsGranted > cc.drawsPerUserMax) {
			return fmt.Errorf("campaign %q: user %q: %d draws left + %d drawn != %d granted (max %d)",
				c.id, user, h.drawsLeft, drawn, h.drawsGranted, cc.drawsPerUserMax)
		}
		rewards += h.rewards
		if cc.fullSets(h) > 0 {
			fullSetHolders++
		}
	}
	if fullSetHolders != cc.fullSetHolders {
		return fmt.Errorf("campaign %q: %d users hold a full set, counted %d", c.id, fullSetHolders, cc.fullSetHolders)
	}
	for i, t := range cc.types {
		spent := uint64(0)
		if slices.Contains(cc.setTypes, i) {
			spent = cc.rewardsGiven
		}
		if t.cap != 0 && t.issued > t.cap {
			return fmt.Errorf("campaign %q: card type %q issued %d, above its cap %d", c.id, t.id, t.issued, t.cap)
		}
		if held[i]+spent != t.issued {
			return fmt.Errorf("campaign %q: card type %q: %d held + %d redeemed != %d issued", c.id, t.id, held[i], spent, t.issued)
		}
	}
	if cc.rewardsGiven > cc.rewardPool || rewards != cc.rewardsGiven {
		return fmt.Errorf("campaign %q: %d rewards given (users hold %d), pool %d", c.id, cc.rewardsGiven, rewards, cc.rewardPool)
	}
	return checkSplit(c)
}

func checkSplit(c *campaign) error {
	cc := c.cards
	if !cc.split {
		if len(cc.payouts) != 0 {
			return fmt.Errorf("campaign %q: payouts before the split", c.id)
		}
		return nil
	}
	if c.state != StateClosed {
		return fmt.Errorf("campaign %q: split but not closed", c.id)
	}
	var sum uint64
	for i, p := range cc.payouts {
		if i > 0 && (cc.payouts[i-1].UserID >= p.UserID || cc.payouts[i-1].Cents < p.Cents || cc.payouts[0].Cents-p.Cents > 1) {
			return fmt.Errorf("campaign %q: payouts out of order or unequal at %q", c.id, p.UserID)
		}
		sum += p.Cents
	}
	if len(cc.payouts) > 0 && sum != cc.potCents {
		return fmt.Errorf("campaign %q: payouts sum to %d cents, the pot is %d", c.id, sum, cc.potCents)
	}
	return nil
}

// CardCollect returns a card-collect campaign's cards, if defined.
func (f *FSM) CardCollect(campaignID string) (CardCollect, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := f.s.cardsView(campaignID)
	if v == nil {
		return CardCollect{}, false
	}
	return *v, true
}

// CardHolder returns a user's draws and cards in a card-collect campaign
// (all zero for a user who has none), if the campaign's cards are defined.
func (f *FSM) CardHolder(campaignID, userID string) (CardHolder, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := f.s.holderView(campaignID, userID)
	if v == nil {
		return CardHolder{}, false
	}
	return *v, true
}

// cardRecords returns the snapshot records of a card campaign: its
// definition and counters, then one per holder in user ID order.
func cardRecords(c *campaign) (*fsmpb.CardCollectRecord, []*fsmpb.CardHolderRecord) {
	cc := c.cards
	def := &fsmpb.DefineCards{
		CampaignId: c.id, RewardPool: cc.rewardPool, PotCents: cc.potCents, DrawsPerUserMax: cc.drawsPerUserMax,
	}
	rec := &fsmpb.CardCollectRecord{Definition: def, RewardsGiven: cc.rewardsGiven, Split: cc.split}
	for _, t := range cc.types {
		def.Types = append(def.Types, &fsmpb.CardType{TypeId: t.id, Weight: t.weight, Cap: t.cap})
		rec.Issued = append(rec.Issued, t.issued)
	}
	for _, t := range cc.setTypes {
		def.SetTypes = append(def.SetTypes, cc.types[t].id)
	}
	for _, p := range cc.payouts {
		rec.Payouts = append(rec.Payouts, &fsmpb.Payout{UserId: p.UserID, Cents: p.Cents})
	}
	var holders []*fsmpb.CardHolderRecord
	for _, user := range cc.sortedHolders() {
		h := cc.holders[user]
		holders = append(holders, &fsmpb.CardHolderRecord{
			CampaignId: c.id, UserId: user, DrawsLeft: h.drawsLeft, DrawsGranted: h.drawsGranted,
			Cards: slices.Clone(h.cards), Rewards: h.rewards,
		})
	}
	return rec, holders
}

func (s *state) restoreCardCollect(rec *fsmpb.CardCollectRecord) error {
	c := s.campaigns[rec.GetDefinition().GetCampaignId()]
	if c == nil || c.kind != KindCardCollect || c.cards != nil {
		return fmt.Errorf("card record %v: no card campaign to hold it", rec)
	}
	cc, err := newCardCollect(rec.GetDefinition())
	if err != nil || len(rec.GetIssued()) != len(cc.types) {
		return fmt.Errorf("card record %v: %v", rec, err)
	}
	for i, n := range rec.GetIssued() {
		cc.types[i].issued = n
	}
	cc.rewardsGiven, cc.split = rec.GetRewardsGiven(), rec.GetSplit()
	for _, p := range rec.GetPayouts() {
		cc.payouts = append(cc.payouts, Payout{UserID: p.GetUserId(), Cents: p.GetCents()})
	}
	c.cards = cc
	return nil
}

func (s *state) restoreCardHolder(rec *fsmpb.CardHolderRecord) error {
	c := s.campaigns[rec.GetCampaignId()]
	if c == nil || c.cards == nil || !validID(rec.GetUserId()) || c.cards.holders[rec.GetUserId()] != nil ||
		len(rec.GetCards()) != len(c.cards.types) {
		return fmt.Errorf("card holder record %v", rec)
	}
	h := &cardHolder{
		drawsLeft: rec.GetDrawsLeft(), drawsGranted: rec.GetDrawsGranted(), cards: slices.Clone(rec.GetCards()), rewards: rec.GetRewards(),
	}
	c.cards.holders[rec.GetUserId()] = h
	if c.cards.fullSets(h) > 0 {
		c.cards.fullSetHolders++
	}
	return nil
}
