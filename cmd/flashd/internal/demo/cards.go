package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/cmd/internal/localcluster"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// The card-collect event: four blessing cards, the last one rare and capped;
// one of each is a full set, redeemed for a reward from a limited pool; at
// close a pot is split among the users still holding a full set.
const (
	cardCampaignID    = "spring-cards"
	cardCampaignName  = "Spring Festival card collect"
	cardPotCents      = 8_888_800
	drawsPerUserMax   = 8
	cardCallTimeout   = 5 * time.Second
	cardCallAttempts  = 8                      // per draw or redemption, on overload or an unknown outcome
	cardRetryPause    = 100 * time.Millisecond // before asking again about an unknown outcome, doubling...
	cardRetryPauseMax = time.Second            // ...up to this: the attempts span a leader election
	cardTapPause      = 50 * time.Millisecond  // a user draws again after 1 to 2 of these
)

var cardTypes = []*pb.CardType{{Id: "fu", Weight: 45}, {Id: "lu", Weight: 30}, {Id: "shou", Weight: 20}, {Id: "xi", Weight: 5}}

// RunCards runs the card-collect event on the same cluster as the sale and
// with the same live view, chaos and summary: services grant draw chances,
// users arrive and draw and redeem through the front doors, then the event
// is closed and split and the store is checked.
func RunCards(ctx context.Context, cfg Config) error {
	cl, stop, err := startStores(ctx, cfg)
	if err != nil {
		return err
	}
	defer stop()
	out := cfg.Out
	rare := uint64(max(cfg.Users/25, 1))
	pool := uint64(max(cfg.Users/200, 1)) // fewer than the full sets the rare card allows: the pool runs out
	types := append([]*pb.CardType(nil), cardTypes...)
	types[3] = &pb.CardType{Id: "xi", Weight: 5, Cap: rare}
	if err := setupCards(ctx, cl.Store, cfg, types, pool); err != nil {
		return err
	}
	if err := cl.StartDoors(ctx, cfg.FrontDoors, "fd"); err != nil {
		return err
	}
	c, err := client.New(ctx, cl.DoorAddrs())
	if err != nil {
		return err
	}
	defer c.Close()

	// Services grant each user 1 to drawsPerUserMax draws (as tasks done).
	r := rand.New(rand.NewPCG(1, 2))
	grants := make([]uint32, cfg.Users)
	for i := range grants {
		grants[i] = 1 + uint32(r.IntN(drawsPerUserMax))
	}
	fmt.Fprintf(out, "event %q: cards %s (xi capped at %d), a full set is one of each, %d rewards, a pot of %s; granting draws to %s users ...\n",
		cardCampaignID, cardTypeList(types), rare, pool, cents(cardPotCents), count(int64(cfg.Users)))
	if err := grantAll(ctx, cl.Store, grants, cfg.Concurrency); err != nil {
		return err
	}
	open := time.Now().Add(openLead) // the front doors learn of the opening first
	state := pb.CampaignState_CAMPAIGN_STATE_OPEN
	if _, err := cl.Store.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: cardCampaignID, State: &state, Start: timestamppb.New(open)}); err != nil {
		return fmt.Errorf("open the event: %w", err)
	}
	fmt.Fprintf(out, "event opens: %s users arrive over %v, draw their cards and redeem full sets through the front doors, %d at a time, for at most %v\n",
		count(int64(cfg.Users)), cfg.Duration/2, cfg.Concurrency, cfg.Duration)

	ev := newCardEvent(cl.Store, c, types, pool, grants, open)
	ev.duration = cfg.Duration
	s := &liveRun{cfg: cfg, cl: cl, client: c, work: ev, kind: "event", campaign: cardCampaignID,
		callName: "calls", callOne: "draw or redemption", latency: "card call", open: open}
	s.run(ctx, func(ctx context.Context) {
		s.event("event opens: users draw and redeem")
		ev.run(ctx, cfg.Duration/2, cfg.Concurrency)
	})
	if ctx.Err() != nil {
		return errInterrupted
	}
	fmt.Fprintln(out, "closing the event, splitting the pot, checking the store: caps, pool, every user's draws, replicas ...")
	results, err := ev.closeAndCheck(ctx)
	if err != nil {
		return err
	}
	s.summary(out, results)
	return failed(results)
}

// cardEvent is the card-collect event as a workload of the live run: the
// reward pool, the capped cards and the draws granted are its stock bars;
// its crowd's draws and redemptions are the calls.
type cardEvent struct {
	st       *client.Store
	c        *client.Client
	types    []*pb.CardType
	pool     uint64
	grants   []uint32
	granted  uint64 // draws granted in all
	open     time.Time
	duration time.Duration // the bound on the crowd

	arrived, done, calls atomic.Int64
	draws, redeemed      atomic.Int64 // acknowledged
	unknownDraws         atomic.Int64 // outcomes never learnt
	unknownRedeems       atomic.Int64
	answers              [cardAnswerCount]atomic.Int64
	poolEmptyAt          atomic.Int64  // first POOL_EMPTY answer, ns since open
	poolEmptied          func(bar int) // told at the first POOL_EMPTY answer, of bar 0; nil: no one

	mu      sync.Mutex
	latency [][]time.Duration // per worker, calls that were sent
	split   *pb.CardCollect   // after the close
}

var _ workload = (*cardEvent)(nil)

// cardAnswer is what one draw or redemption was answered, in the end.
type cardAnswer int

const (
	answerDrawn cardAnswer = iota
	answerRedeemed
	answerNoDrawsLeft
	answerNoFullSet
	answerPoolEmpty
	answerSoldOut // every card type at its cap
	answerRefused // another business refusal
	answerUnknown // retries spent: the outcome is unknown
	cardAnswerCount
)

var cardAnswerNames = [cardAnswerCount]string{
	"drawn", "redeemed", "no draws left", "no full set", "pool empty", "every card capped", "refused", "unknown",
}

func newCardEvent(st *client.Store, c *client.Client, types []*pb.CardType, pool uint64, grants []uint32, open time.Time) *cardEvent {
	ev := &cardEvent{st: st, c: c, types: types, pool: pool, grants: grants, open: open}
	for _, g := range grants {
		ev.granted += uint64(g)
	}
	return ev
}

// watchEmpty: bar 0 is the reward pool; the caps and the draws are
// learnt from the store's counts.
func (ev *cardEvent) watchEmpty(fn func(bar int)) { ev.poolEmptied = fn }

func (ev *cardEvent) bars(ctx context.Context) []itemView {
	out := []itemView{{name: "rewards", total: ev.pool, empty: "pool empty", soldOutAt: time.Duration(ev.poolEmptyAt.Load())}}
	for _, t := range ev.types {
		if t.GetCap() > 0 {
			out = append(out, itemView{name: t.GetId() + " (cap)", total: t.GetCap(), empty: "cap reached"})
		}
	}
	out = append(out, itemView{name: "draws", total: ev.granted, empty: "all drawn"})
	ctx, cancel := context.WithTimeout(ctx, pollInterval)
	defer cancel()
	resp, err := ev.st.GetCardCollect(ctx, &pb.GetCardCollectRequest{CampaignId: cardCampaignID, Consistency: pb.Consistency_CONSISTENCY_STALE})
	if err != nil {
		return out
	}
	cc := resp.GetCards()
	out[0].available, out[0].known = cc.GetRewardPool()-min(cc.GetRewardsGiven(), cc.GetRewardPool()), true
	var issued uint64
	k := 1
	for _, t := range cc.GetTypes() {
		issued += t.GetIssued()
		if t.GetCap() > 0 && k < len(out)-1 {
			out[k].available, out[k].known = t.GetCap()-min(t.GetIssued(), t.GetCap()), true
			k++
		}
	}
	last := len(out) - 1
	out[last].available, out[last].known = ev.granted-min(issued, ev.granted), true
	return out
}

func (ev *cardEvent) progress() progress {
	draws := ev.draws.Load()
	return progress{
		arrived: ev.arrived.Load(), done: ev.done.Load(), calls: ev.calls.Load(),
		counts: []tally{{"draws", "draws", draws}, {"redeemed", "sets redeemed", ev.redeemed.Load()}},
		given:  float64(draws) / float64(max(ev.granted, 1)),
	}
}

// cardStages are the funnel stages of card calls: the claims' first five,
// then the door's empty-pool answer and the store.
var cardStages = append(slices.Clone(localcluster.FunnelStages[:5]),
	localcluster.FunnelStage{Name: "cache", Title: "cache (reward pool empty)"},
	localcluster.FunnelStage{Name: "store", Title: "store (Raft)"})

func (ev *cardEvent) stages() []localcluster.FunnelStage { return cardStages }

func (ev *cardEvent) latencies() []time.Duration {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return sortedLatencies(ev.latency)
}

// run lets the users arrive over window (most of them early: arrival =
// window * (i/n)^2) and spend their draws, concurrency users at a time;
// then three in four redeem full sets until they hold none or the pool is
// empty, and the others keep theirs for a share of the pot.
// It returns when every user is done or ctx ends.
func (ev *cardEvent) run(ctx context.Context, window time.Duration, concurrency int) {
	work := make(chan int)
	ev.latency = make([][]time.Duration, concurrency)
	var wg sync.WaitGroup
	for k := range concurrency {
		wg.Go(func() {
			for i := range work {
				ev.user(ctx, k, i)
			}
		})
	}
	n := len(ev.grants)
	for i := range n {
		f := float64(i) / float64(n)
		sleepUntil(ctx, ev.open.Add(time.Duration(f*f*float64(window))))
		select {
		case work <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
}

func (ev *cardEvent) user(ctx context.Context, worker, i int) {
	ev.arrived.Add(1)
	defer ev.done.Add(1)
	as := client.AsUser(cardUser(i))
	for range ev.grants[i] {
		if ctx.Err() != nil {
			return
		}
		a := ev.call(ctx, worker, func(ctx context.Context, id client.CallOption) error {
			_, err := ev.c.DrawCard(ctx, cardCampaignID, as, id)
			return err
		}, answerDrawn)
		if a != answerDrawn && a != answerUnknown {
			return
		}
		sleepUntil(ctx, time.Now().Add(cardTapPause+rand.N(cardTapPause)))
	}
	for i%4 != 3 && ctx.Err() == nil {
		if ev.call(ctx, worker, func(ctx context.Context, id client.CallOption) error {
			_, err := ev.c.RedeemSet(ctx, cardCampaignID, as, id)
			return err
		}, answerRedeemed) != answerRedeemed {
			return
		}
	}
}

// call makes one draw or redemption (ok is its answer when it succeeds),
// retrying a busy answer or an unknown outcome with the same request ID, at
// most cardCallAttempts times.
func (ev *cardEvent) call(ctx context.Context, worker int, fn func(context.Context, client.CallOption) error, ok cardAnswer) cardAnswer {
	requestID := client.NewRequestID()
	id := client.RequestID(requestID) // client.Resume once a call may have been applied
	pause := cardRetryPause
	sent := false
	for range cardCallAttempts {
		if ctx.Err() != nil {
			break
		}
		sent = true
		ev.calls.Add(1)
		cctx, cancel := context.WithTimeout(ctx, cardCallTimeout)
		start := time.Now()
		err := fn(cctx, id)
		if client.MayHaveApplied(err) {
			id = client.Resume(requestID)
		}
		elapsed := time.Since(start)
		cancel()
		if !errors.Is(err, client.ErrDropped) {
			ev.latency[worker] = append(ev.latency[worker], elapsed)
		}
		a := answerUnknown
		switch {
		case err == nil:
			a = ok
		case errors.Is(err, client.ErrNoDrawsLeft):
			a = answerNoDrawsLeft
		case errors.Is(err, client.ErrNoFullSet):
			a = answerNoFullSet
		case errors.Is(err, client.ErrPoolEmpty):
			a = answerPoolEmpty
			if ev.poolEmptyAt.CompareAndSwap(0, int64(max(time.Since(ev.open), 1))) && ev.poolEmptied != nil {
				ev.poolEmptied(0)
			}
		case errors.Is(err, client.ErrSoldOut):
			a = answerSoldOut
		case errors.Is(err, client.ErrFailedPrecondition):
			a = answerRefused
		case errors.Is(err, client.ErrOverloaded):
			sleepUntil(ctx, time.Now().Add(max(client.RetryAfter(err), 50*time.Millisecond)))
			continue
		default: // unavailable, a deadline: the outcome is unknown; ask again with the same request ID
			sleepUntil(ctx, time.Now().Add(pause))
			pause = min(2*pause, cardRetryPauseMax)
			continue
		}
		ev.answers[a].Add(1)
		switch a {
		case answerDrawn:
			ev.draws.Add(1)
		case answerRedeemed:
			ev.redeemed.Add(1)
		}
		return a
	}
	if !sent { // the crowd's time was up before the call
		return answerUnknown
	}
	ev.answers[answerUnknown].Add(1)
	if ok == answerDrawn {
		ev.unknownDraws.Add(1)
	} else {
		ev.unknownRedeems.Add(1)
	}
	return answerUnknown
}

// closeAndCheck closes the event, splits the pot, and checks the store:
// caps, the pool, every user's draws against their grant, the cards issued
// against the draws acknowledged, the split, and the replicas.
func (ev *cardEvent) closeAndCheck(ctx context.Context) ([]checkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	split, err := ev.st.CloseAndSplit(ctx, &pb.CloseAndSplitRequest{CampaignId: cardCampaignID})
	if err != nil {
		return nil, fmt.Errorf("close and split: %w", err)
	}
	ev.mu.Lock()
	ev.split = split
	ev.mu.Unlock()
	var results []checkResult
	add := func(name string, ok bool, format string, args ...any) {
		results = append(results, checkResult{name, ok, fmt.Sprintf(format, args...)})
	}

	var issued uint64
	capsOK, capsDetail := true, ""
	for i, t := range split.GetTypes() {
		issued += t.GetIssued()
		if c := ev.types[i].GetCap(); c != 0 {
			capsOK = capsOK && t.GetIssued() <= c
			capsDetail += fmt.Sprintf("%s issued %d of cap %d; ", t.GetId(), t.GetIssued(), c)
		}
	}
	add("rare-card caps", capsOK, "%snever above", capsDetail)

	given, acked, unknown := split.GetRewardsGiven(), uint64(ev.redeemed.Load()), uint64(ev.unknownRedeems.Load())
	add("reward pool", given <= ev.pool && given >= acked && given <= acked+unknown,
		"%d given of %d; %d redemptions acknowledged, %d outcomes unknown", given, ev.pool, acked, unknown)

	overGrant, users, drawn, readErr := ev.readHolders(ctx, len(split.GetSetTypes()))
	switch {
	case readErr != nil:
		add("draws within grants", false, "%v", readErr)
	default:
		add("draws within grants", len(overGrant) == 0 && drawn == issued,
			"%d users read back: granted = left + drawn for each%s; %d cards drawn, %d issued", users, overDetail(overGrant), drawn, issued)
	}

	ackedDraws, unknownDraws := uint64(ev.draws.Load()), uint64(ev.unknownDraws.Load())
	add("every acknowledged draw issued", issued >= ackedDraws && issued <= ackedDraws+unknownDraws,
		"%d cards issued, %d draws acknowledged, %d outcomes unknown", issued, ackedDraws, unknownDraws)

	var paid, low, high uint64
	for i, p := range split.GetPayouts() {
		paid += p.GetCents()
		if i == 0 || p.GetCents() < low {
			low = p.GetCents()
		}
		high = max(high, p.GetCents())
	}
	n := len(split.GetPayouts())
	add("pot split", n == 0 || paid == cardPotCents && high-low <= 1,
		"%s paid to %d full-set holders (%s to %s each), pot %s", cents(paid), n, cents(low), cents(high), cents(cardPotCents))

	status, err := converged(ctx, ev.st)
	if err != nil {
		add("replicas agree", false, "%v", err)
	} else {
		m := status.GetMembers()[0].GetStatus()
		add("replicas agree", true, "%d members at applied index %d, state digest %s", len(status.GetMembers()), m.GetAppliedIndex(), short(m.GetDigest()))
	}
	return results, nil
}

// readHolders reads every user's cards back (linearizable reads) and
// returns the users whose draws do not add up to their grant, the users
// read, and the cards they drew in all (held, plus setSize per reward).
func (ev *cardEvent) readHolders(ctx context.Context, setSize int) (bad []string, users int, drawn uint64, err error) {
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range checkWorkers {
		wg.Go(func() {
			for i := range jobs {
				res, rerr := ev.st.GetCards(ctx, &pb.GetCardsRequest{CampaignId: cardCampaignID, UserId: cardUser(i)})
				mu.Lock()
				if rerr != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("cards of %s: %w", cardUser(i), rerr)
					}
					mu.Unlock()
					continue
				}
				h := res.GetHolder()
				var held uint64
				for _, c := range h.GetCards() {
					held += c.GetCount()
				}
				d := held + uint64(setSize)*h.GetRewards()
				users++
				drawn += d
				if h.GetDrawsGranted() != uint64(ev.grants[i]) || d+h.GetDrawsLeft() != h.GetDrawsGranted() {
					bad = append(bad, fmt.Sprintf("%s granted %d (store: %d), drew %d, %d left", cardUser(i), ev.grants[i], h.GetDrawsGranted(), d, h.GetDrawsLeft()))
				}
				mu.Unlock()
			}
		})
	}
	for i := range ev.grants {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return bad, users, drawn, firstErr
}

// summaryHead is the card event's account: the users, the cards, the
// rewards and the pot, the answers.
func (ev *cardEvent) summaryHead(p func(string, ...any), ended time.Duration) {
	n := len(ev.grants)
	arrived, done := ev.arrived.Load(), ev.done.Load()
	p("users     %s, granted %s draws in all (1 to %d each): %s arrived, %s done, %s still drawing and %s not yet arrived at the end (bound %v)",
		count(int64(n)), count(int64(ev.granted)), drawsPerUserMax, count(arrived), count(done), count(arrived-done), count(int64(n)-arrived), ev.duration)
	p("          %s calls in %.1fs", count(ev.calls.Load()), ended.Seconds())
	ev.mu.Lock()
	split := ev.split
	ev.mu.Unlock()
	p("")
	p("%-10s %9s %9s %9s", "card", "weight", "cap", "issued")
	for i, t := range split.GetTypes() {
		limit := "-"
		if c := ev.types[i].GetCap(); c > 0 {
			limit = count(int64(c))
		}
		p("%-10s %9d %9s %9s", t.GetId(), ev.types[i].GetWeight(), limit, count(int64(t.GetIssued())))
	}
	empty := "not empty"
	if at := time.Duration(ev.poolEmptyAt.Load()); at > 0 {
		empty = fmt.Sprintf("empty after %.1fs", at.Seconds())
	}
	p("rewards   %s of %s given (%s)", count(int64(split.GetRewardsGiven())), count(int64(ev.pool)), empty)
	if payouts := split.GetPayouts(); len(payouts) > 0 {
		k := uint64(len(payouts))
		p("pot       %s among %d full-set holders: %s each, the first %d (by user ID) one cent more",
			cents(cardPotCents), k, cents(cardPotCents/k), cardPotCents%k)
	}
	p("")
	var answers []string
	for a := range cardAnswerCount {
		if n := ev.answers[a].Load(); n > 0 {
			answers = append(answers, fmt.Sprintf("%s %s", cardAnswerNames[a], count(n)))
		}
	}
	p("answers to calls (client): %s", strings.Join(answers, " · "))
}

func setupCards(ctx context.Context, st *client.Store, cfg Config, types []*pb.CardType, pool uint64) error {
	_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: cardCampaignID, Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, Name: cardCampaignName, Start: timestamppb.Now(),
	}})
	if err != nil {
		return fmt.Errorf("create campaign: %w", err)
	}
	_, err = st.DefineCards(ctx, &pb.DefineCardsRequest{
		CampaignId: cardCampaignID, Types: types, SetTypes: []string{"fu", "lu", "shou", "xi"},
		RewardPool: pool, PotCents: cardPotCents, DrawsPerUserMax: drawsPerUserMax,
	})
	if err != nil {
		return fmt.Errorf("define cards: %w", err)
	}
	_, err = st.SetFrontDoorConfig(ctx, &pb.SetFrontDoorConfigRequest{Config: &pb.FrontDoorConfig{
		GlobalRate: cfg.GlobalRate, PerUserRate: cfg.PerUserRate, DegradeLevel: uint32(cfg.DegradeLevel), DropFraction: cfg.DropFraction,
	}})
	if err != nil {
		return fmt.Errorf("set the front doors' configuration: %w", err)
	}
	return nil
}

// grantAll grants every user's draws through the store, as services would,
// with a request ID per grant.
func grantAll(ctx context.Context, st *client.Store, grants []uint32, concurrency int) error {
	work := make(chan int)
	errs := make(chan error, concurrency)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range work {
				_, err := st.GrantDraws(ctx, &pb.GrantDrawsRequest{
					CampaignId: cardCampaignID, UserId: cardUser(i), Count: grants[i], RequestId: fmt.Sprint("grant-", i),
				})
				if err != nil {
					errs <- fmt.Errorf("grant draws to %s: %w", cardUser(i), err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range grants {
		select {
		case work <- i:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil && len(errs) > 0 {
		err = <-errs
	}
	return err
}

func cardUser(i int) string { return fmt.Sprintf("user-%07d", i) }

func cardTypeList(types []*pb.CardType) string {
	var parts []string
	for _, t := range types {
		parts = append(parts, fmt.Sprintf("%s:%d", t.GetId(), t.GetWeight()))
	}
	return strings.Join(parts, " ")
}

func cents(c uint64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }
