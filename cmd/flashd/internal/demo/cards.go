package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// The card-collect event: four blessing cards, the last one rare and capped;
// one of each is a full set, redeemed for a reward from a limited pool; at
// close a pot is split among the users still holding a full set.
const (
	cardCampaignID   = "spring-cards"
	cardCampaignName = "Spring Festival card collect"
	cardPotCents     = 8_888_800
	drawsPerUserMax  = 8
	cardCallTimeout  = 5 * time.Second
	cardCallAttempts = 5 // per draw or redemption, on overload
)

var cardTypes = []*pb.CardType{{Id: "fu", Weight: 45}, {Id: "lu", Weight: 30}, {Id: "shou", Weight: 20}, {Id: "xi", Weight: 5}}

// cardCrowd counts what the simulated users did and were told.
type cardCrowd struct {
	c                    *client.Client
	draws, redeemed      atomic.Int64 // acknowledged
	refused, unknown     atomic.Int64 // business refusals; failures whose outcome is unknown
	overloaded, poolSeen atomic.Int64
	finished             atomic.Bool // every user is done
}

// RunCards runs the card-collect event: the same cluster as the sale,
// services granting draw chances, users drawing and redeeming through the
// front doors, a live line a second, then the close and split and the
// checks.
func RunCards(ctx context.Context, cfg Config) error {
	cl, stop, err := startStores(ctx, cfg)
	if err != nil {
		return err
	}
	defer stop()
	out := cfg.Out
	rare := uint64(max(cfg.Users/25, 1))
	pool := uint64(max(cfg.Users/20, 1))
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
	state := pb.CampaignState_CAMPAIGN_STATE_OPEN
	if _, err := cl.Store.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: cardCampaignID, State: &state, Start: timestamppb.Now()}); err != nil {
		return fmt.Errorf("open the event: %w", err)
	}
	fmt.Fprintf(out, "event opens: %s users draw their cards and redeem full sets through the front doors, %d at a time, for at most %v\n",
		count(int64(cfg.Users)), cfg.Concurrency, cfg.Duration)

	crowd := &cardCrowd{c: c}
	start := time.Now()
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { crowd.run(runCtx, grants, cfg.Concurrency) })
	tick := time.NewTicker(time.Second)
	lastDraws := int64(0)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			stop()
			wg.Wait()
			return errInterrupted
		case <-runCtx.Done():
			done = true
		case <-tick.C:
		}
		d := crowd.draws.Load()
		fmt.Fprintf(out, "%5.1fs  %6s draws/s  cards %s  rewards %s/%d  refused %s  overloaded %s\n",
			time.Since(start).Seconds(), count(d-lastDraws), issuedLine(ctx, cl.Store), count(crowd.redeemed.Load()), pool,
			count(crowd.refused.Load()), count(crowd.overloaded.Load()))
		lastDraws = d
		if crowd.finished.Load() {
			break
		}
	}
	tick.Stop()
	stop()
	wg.Wait()
	return crowd.closeAndCheck(ctx, cl.Store, out, types, pool, time.Since(start))
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

// run has each user spend their draws; then half the users (even numbers)
// redeem full sets until they hold none or the pool is empty, and the others
// keep theirs for a share of the pot.
func (w *cardCrowd) run(ctx context.Context, grants []uint32, concurrency int) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range work {
				w.user(ctx, cardUser(i), grants[i], i%2 == 0)
			}
		})
	}
	for i := range grants {
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
	w.finished.Store(true)
}

func (w *cardCrowd) user(ctx context.Context, id string, draws uint32, redeem bool) {
	for range draws {
		if !w.call(ctx, func(ctx context.Context, requestID string) error {
			_, err := w.c.DrawCard(ctx, cardCampaignID, client.AsUser(id), client.RequestID(requestID))
			return err
		}, &w.draws) {
			break
		}
	}
	for redeem && ctx.Err() == nil {
		if !w.call(ctx, func(ctx context.Context, requestID string) error {
			_, err := w.c.RedeemSet(ctx, cardCampaignID, client.AsUser(id), client.RequestID(requestID))
			return err
		}, &w.redeemed) {
			return
		}
	}
}

// call makes one draw or redemption, retrying on overload with the same
// request ID; it reports whether it was acknowledged.
func (w *cardCrowd) call(ctx context.Context, fn func(context.Context, string) error, acked *atomic.Int64) bool {
	requestID := client.NewRequestID()
	for range cardCallAttempts {
		cctx, cancel := context.WithTimeout(ctx, cardCallTimeout)
		err := fn(cctx, requestID)
		cancel()
		switch {
		case err == nil:
			acked.Add(1)
			return true
		case errors.Is(err, client.ErrPoolEmpty):
			w.poolSeen.Add(1)
			w.refused.Add(1)
			return false
		case errors.Is(err, client.ErrFailedPrecondition):
			w.refused.Add(1)
			return false
		case errors.Is(err, client.ErrOverloaded):
			w.overloaded.Add(1)
			sleepUntil(ctx, time.Now().Add(max(client.RetryAfter(err), 50*time.Millisecond)))
		default: // the client library's retries are spent: the outcome is unknown
			w.unknown.Add(1)
			return false
		}
	}
	w.unknown.Add(1)
	return false
}

// closeAndCheck closes the event, splits the pot, and checks the store.
func (w *cardCrowd) closeAndCheck(ctx context.Context, st *client.Store, out io.Writer, types []*pb.CardType, pool uint64, took time.Duration) error {
	split, err := st.CloseAndSplit(ctx, &pb.CloseAndSplitRequest{CampaignId: cardCampaignID})
	if err != nil {
		return fmt.Errorf("close and split: %w", err)
	}
	var issued, paid uint64
	var results []checkResult
	capsOK := true
	for i, t := range split.GetTypes() {
		issued += t.GetIssued()
		if c := types[i].GetCap(); c != 0 && t.GetIssued() > c {
			capsOK = false
		}
	}
	for _, p := range split.GetPayouts() {
		paid += p.GetCents()
	}
	acked, unknown := uint64(w.draws.Load()), uint64(w.unknown.Load())
	results = append(results,
		checkResult{name: "caps", ok: capsOK, detail: fmt.Sprintf("xi issued %d, cap %d", split.GetTypes()[3].GetIssued(), types[3].GetCap())},
		checkResult{name: "reward pool", ok: split.GetRewardsGiven() <= pool && split.GetRewardsGiven() == uint64(w.redeemed.Load()),
			detail: fmt.Sprintf("%d given of %d; %d redemptions acknowledged", split.GetRewardsGiven(), pool, w.redeemed.Load())},
		checkResult{name: "draws", ok: issued >= acked && issued <= acked+unknown,
			detail: fmt.Sprintf("%d cards issued, %d draws acknowledged, %d outcomes unknown", issued, acked, unknown)},
		checkResult{name: "pot split", ok: len(split.GetPayouts()) == 0 || paid == cardPotCents,
			detail: fmt.Sprintf("%s paid to %d full-set holders, pot %s", cents(paid), len(split.GetPayouts()), cents(cardPotCents))},
	)
	status, err := converged(ctx, st)
	if err != nil {
		results = append(results, checkResult{name: "replicas", ok: false, detail: err.Error()})
	} else {
		m := status.GetMembers()[0].GetStatus()
		results = append(results, checkResult{name: "replicas", ok: true,
			detail: fmt.Sprintf("%d nodes at index %d, digest %s", len(status.GetMembers()), m.GetAppliedIndex(), short(m.GetDigest()))})
	}
	fmt.Fprintf(out, "\nsummary: %s draws and %s redemptions acknowledged in %.1fs (%s draws/s); %s refusals, %s overloaded answers retried\n",
		count(int64(acked)), count(w.redeemed.Load()), took.Seconds(), count(int64(float64(acked)/took.Seconds())),
		count(w.refused.Load()), count(w.overloaded.Load()))
	fmt.Fprintf(out, "cards issued: %s\n", issuedOf(split))
	if n := len(split.GetPayouts()); n > 0 {
		p := split.GetPayouts()
		fmt.Fprintf(out, "pot: %s among %d holders: %s each, the first %d (by user ID) one cent more\n",
			cents(cardPotCents), n, cents(p[n-1].GetCents()), cardPotCents%uint64(n))
	}
	failed := false
	for _, r := range results {
		mark := "ok  "
		if !r.ok {
			mark, failed = "FAIL", true
		}
		fmt.Fprintf(out, "  %s %-12s %s\n", mark, r.name, r.detail)
	}
	if failed {
		return ErrCheckFailed
	}
	return nil
}

func issuedLine(ctx context.Context, st *client.Store) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := st.GetCardCollect(ctx, &pb.GetCardCollectRequest{CampaignId: cardCampaignID, Consistency: pb.Consistency_CONSISTENCY_STALE})
	if err != nil {
		return "?"
	}
	return issuedOf(resp.GetCards())
}

func issuedOf(cc *pb.CardCollect) string {
	var parts []string
	for _, t := range cc.GetTypes() {
		parts = append(parts, fmt.Sprintf("%s %s", t.GetId(), count(int64(t.GetIssued()))))
	}
	return strings.Join(parts, " ")
}

func cardTypeList(types []*pb.CardType) string {
	var parts []string
	for _, t := range types {
		parts = append(parts, fmt.Sprintf("%s:%d", t.GetId(), t.GetWeight()))
	}
	return strings.Join(parts, " ")
}

func cents(c uint64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }
