package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// The cards workload: a card-collect campaign of three card types (weights
// 60, 30 and 10, one of each makes a full set) and a pool of --stock
// rewards. Every user is granted --draws draw chances before the run
// (through the store, as a service would, not measured). In the run, a user
// whose last answer showed a full set redeems it; any other user draws.
// Draws are the grants of this workload ("granted"); redemptions are
// answered "redeemed"; refusals are no_draws_left, no_full_set, pool_empty.

// Card types of the bench's campaign, and what answers are called.
var benchCardTypes = []*pb.CardType{{Id: "fu", Weight: 60}, {Id: "lu", Weight: 30}, {Id: "shou", Weight: 10}}

const (
	reasonRedeemed = "redeemed"
	grantWorkers   = 64 // draw chances granted at once during the setup
	grantTimeout   = 2 * time.Minute
)

// answered is a success that is not a grant: reasonOf names it, and it
// counts as no error.
type answered string

func (a answered) Error() string { return string(a) }

// cardsTarget draws and redeems through the client library.
type cardsTarget struct {
	c        *client.Client
	campaign string
	full     []atomic.Bool // user index: the last answer showed a full set
}

func (t *cardsTarget) Claim(ctx context.Context, r Request) error {
	u := &t.full[r.UserIndex]
	if u.Load() {
		res, err := t.c.RedeemSet(ctx, t.campaign, client.AsUser(r.User))
		if err != nil {
			if errors.Is(err, client.ErrNoFullSet) {
				u.Store(false)
			}
			return err
		}
		u.Store(res.GetHolder().GetFullSets() > 0)
		return answered(reasonRedeemed)
	}
	res, err := t.c.DrawCard(ctx, t.campaign, client.AsUser(r.User))
	if err != nil {
		return err
	}
	u.Store(res.GetHolder().GetFullSets() > 0)
	return nil
}

func (t *cardsTarget) Close() error { return t.c.Close() }

// setupCards creates the card-collect campaign (fresh: on the bench's own
// cluster; else an existing one is kept) and grants every user of w its
// draw chances.
func setupCards(ctx context.Context, st *client.Store, campaign string, rewards int64, draws int, w *workload, fresh bool) error {
	ctx, cancel := context.WithTimeout(ctx, grantTimeout)
	defer cancel()
	_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: campaign, Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, Name: "flashctl bench cards", Start: timestamppb.Now(),
	}})
	exists := errors.Is(err, client.ErrAlreadyExists) && !fresh
	if err != nil && !exists {
		return fmt.Errorf("create campaign %s: %w", campaign, err)
	}
	if !exists {
		var set []string
		for _, t := range benchCardTypes {
			set = append(set, t.GetId())
		}
		if _, err := st.DefineCards(ctx, &pb.DefineCardsRequest{CampaignId: campaign, Types: benchCardTypes, SetTypes: set,
			RewardPool: uint64(rewards), DrawsPerUserMax: uint64(draws)}); err != nil {
			return fmt.Errorf("define the cards of %s: %w", campaign, err)
		}
		open := pb.CampaignState_CAMPAIGN_STATE_OPEN
		if _, err := st.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: campaign, State: &open}); err != nil {
			return fmt.Errorf("open campaign %s: %w", campaign, err)
		}
	}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range grantWorkers {
		wg.Go(func() {
			for u := next.Add(1) - 1; u < w.users && ctx.Err() == nil; u = next.Add(1) - 1 {
				_, err := st.GrantDraws(ctx, &pb.GrantDrawsRequest{CampaignId: campaign, UserId: w.request(u).User, Count: uint32(draws)})
				if err != nil && !errors.Is(err, client.ErrLimitReached) {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("grant draws: %w", err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// rewardsLeft is the rewards still in the pool (a stale read).
func rewardsLeft(ctx context.Context, st *client.Store, campaign string) (int64, bool) {
	res, err := st.GetCardCollect(ctx, &pb.GetCardCollectRequest{CampaignId: campaign, Consistency: pb.Consistency_CONSISTENCY_STALE})
	if err != nil {
		return 0, false
	}
	c := res.GetCards()
	return int64(c.GetRewardPool() - c.GetRewardsGiven()), true
}
