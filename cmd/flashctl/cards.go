package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

func newCardsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cards",
		Short: "Card-collect campaigns: define cards, grant draws, draw, redeem sets, split the pot",
	}
	cmd.AddCommand(newCardsDefineCmd(g), newCardsGrantCmd(g), newCardsDrawCmd(g), newCardsRedeemCmd(g),
		newCardsShowCmd(g), newCardsCloseSplitCmd(g))
	return cmd
}

func newCardsDefineCmd(g *globals) *cobra.Command {
	var types []string
	req := &pb.DefineCardsRequest{}
	cmd := &cobra.Command{
		Use:   "define CAMPAIGN --type ID:WEIGHT[:CAP]... --set ID,ID,...",
		Short: "Define a draft card-collect campaign's card types, full set, reward pool and pot (once)",
		Example: `  flashctl cards define spring --type fu:60 --type lu:30 --type shou:10:500 --set fu,lu,shou \
    --pool 1000 --pot-cents 10000000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			req.CampaignId = args[0]
			if req.Types, err = parseCardTypes(types); err != nil {
				return err
			}
			req.SetTypes = splitList(strings.Join(req.SetTypes, ","))
			ensureRequestID(&req.RequestId)
			return g.call(cmd, func(ctx context.Context, st *client.Store) error {
				cc, err := st.DefineCards(ctx, req)
				if err != nil {
					return retryHint(err, req.GetRequestId())
				}
				return g.render(cc, func(w io.Writer) { cardCollectTable(w, cc) })
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&types, "type", nil, "a card type, ID:WEIGHT or ID:WEIGHT:CAP (CAP: most ever issued); repeat for each")
	fl.StringSliceVar(&req.SetTypes, "set", nil, "the card types one full set needs, comma-separated")
	fl.Uint64Var(&req.RewardPool, "pool", 0, "rewards that full sets can be redeemed for, in all")
	fl.Uint64Var(&req.PotCents, "pot-cents", 0, "pot split at close among full-set holders, in cents")
	fl.Uint64Var(&req.DrawsPerUserMax, "draws-per-user-max", 0, "most draws granted to one user (0: no limit)")
	addRequestIDFlag(cmd, &req.RequestId)
	requireFlags(cmd, "type", "set")
	return cmd
}

// parseCardTypes reads --type values, ID:WEIGHT or ID:WEIGHT:CAP.
func parseCardTypes(values []string) ([]*pb.CardType, error) {
	var out []*pb.CardType
	for _, v := range values {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
			return nil, fmt.Errorf("--type %q: want ID:WEIGHT or ID:WEIGHT:CAP", v)
		}
		t := &pb.CardType{Id: parts[0]}
		var err error
		if t.Weight, err = strconv.ParseUint(parts[1], 10, 64); err != nil || t.Weight == 0 {
			return nil, fmt.Errorf("--type %q: weight must be a positive integer", v)
		}
		if len(parts) == 3 {
			if t.Cap, err = strconv.ParseUint(parts[2], 10, 64); err != nil || t.Cap == 0 {
				return nil, fmt.Errorf("--type %q: cap must be a positive integer", v)
			}
		}
		out = append(out, t)
	}
	return out, nil
}

func newCardsGrantCmd(g *globals) *cobra.Command {
	req := &pb.GrantDrawsRequest{}
	cmd := &cobra.Command{
		Use:     "grant CAMPAIGN --user U --count N",
		Short:   "Grant a user draw chances (idempotent by --request-id)",
		Example: `  flashctl cards grant spring --user alice --count 5 --request-id task-42-alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.CampaignId = args[0]
			ensureRequestID(&req.RequestId)
			return g.call(cmd, func(ctx context.Context, st *client.Store) error {
				resp, err := st.GrantDraws(ctx, req)
				if err != nil {
					return retryHint(err, req.GetRequestId())
				}
				return g.render(resp, func(w io.Writer) { holderTable(w, resp.GetHolder()) })
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.UserId, "user", "", "user ID (required)")
	fl.Uint32Var(&req.Count, "count", 1, "draw chances to grant, 1 to 1000")
	addRequestIDFlag(cmd, &req.RequestId)
	requireFlags(cmd, "user")
	return cmd
}

func newCardsDrawCmd(g *globals) *cobra.Command {
	req := &pb.DrawCardRequest{}
	cmd := &cobra.Command{
		Use:   "draw CAMPAIGN --user U",
		Short: "Spend one of a user's draw chances for one card",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.CampaignId = args[0]
			ensureRequestID(&req.RequestId)
			return g.call(cmd, func(ctx context.Context, st *client.Store) error {
				resp, err := st.DrawCard(ctx, req)
				if err != nil {
					return retryHint(err, req.GetRequestId())
				}
				return g.render(resp, func(w io.Writer) {
					row(w, "drawn:", resp.GetCardType())
					holderTable(w, resp.GetHolder())
				})
			})
		},
	}
	cmd.Flags().StringVar(&req.UserId, "user", "", "user ID (required)")
	addRequestIDFlag(cmd, &req.RequestId)
	requireFlags(cmd, "user")
	return cmd
}

func newCardsRedeemCmd(g *globals) *cobra.Command {
	req := &pb.RedeemSetRequest{}
	cmd := &cobra.Command{
		Use:   "redeem CAMPAIGN --user U",
		Short: "Spend one full set of a user's cards for one reward from the pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.CampaignId = args[0]
			ensureRequestID(&req.RequestId)
			return g.call(cmd, func(ctx context.Context, st *client.Store) error {
				resp, err := st.RedeemSet(ctx, req)
				if err != nil {
					return retryHint(err, req.GetRequestId())
				}
				return g.render(resp, func(w io.Writer) {
					row(w, "reward:", resp.GetReward())
					holderTable(w, resp.GetHolder())
				})
			})
		},
	}
	cmd.Flags().StringVar(&req.UserId, "user", "", "user ID (required)")
	addRequestIDFlag(cmd, &req.RequestId)
	requireFlags(cmd, "user")
	return cmd
}

func newCardsShowCmd(g *globals) *cobra.Command {
	var user string
	var stale bool
	cmd := &cobra.Command{
		Use:   "show CAMPAIGN [--user U]",
		Short: "Show a campaign's cards, rewards and payouts, or one user's draws and cards",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(cmd, func(ctx context.Context, st *client.Store) error {
				if user != "" {
					resp, err := st.GetCards(ctx, &pb.GetCardsRequest{CampaignId: args[0], UserId: user, Consistency: consistency(stale)})
					if err != nil {
						return err
					}
					return g.render(resp, func(w io.Writer) {
						holderTable(w, resp.GetHolder())
						staleNote(w, stale, resp.GetIndex())
					})
				}
				resp, err := st.GetCardCollect(ctx, &pb.GetCardCollectRequest{CampaignId: args[0], Consistency: consistency(stale)})
				if err != nil {
					return err
				}
				return g.render(resp, func(w io.Writer) {
					cardCollectTable(w, resp.GetCards())
					staleNote(w, stale, resp.GetIndex())
				})
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "show this user's draws and cards")
	addStaleFlag(cmd, &stale)
	return cmd
}

func newCardsCloseSplitCmd(g *globals) *cobra.Command {
	req := &pb.CloseAndSplitRequest{}
	cmd := &cobra.Command{
		Use:   "close-split CAMPAIGN",
		Short: "Close a card-collect campaign and split its pot among full-set holders",
		Long: `Close a card-collect campaign and split its pot equally among the users
holding at least one full set, one share each, in integer cents: each gets
pot / full-set holders rounded down, and the remainder cents go one each to the
first of them in ascending user ID order. Running it again shows the same
payouts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.CampaignId = args[0]
			ensureRequestID(&req.RequestId)
			return g.call(cmd, func(ctx context.Context, st *client.Store) error {
				cc, err := st.CloseAndSplit(ctx, req)
				if err != nil {
					return retryHint(err, req.GetRequestId())
				}
				return g.render(cc, func(w io.Writer) { cardCollectTable(w, cc) })
			})
		},
	}
	addRequestIDFlag(cmd, &req.RequestId)
	return cmd
}

func cardCollectTable(w io.Writer, cc *pb.CardCollect) {
	row(w, "campaign:", cc.GetCampaignId())
	row(w, "full set:", strings.Join(cc.GetSetTypes(), ", "))
	row(w, "rewards:", fmt.Sprintf("%d of %d given", cc.GetRewardsGiven(), cc.GetRewardPool()))
	row(w, "pot:", formatCents(cc.GetPotCents()))
	row(w, "holders:", fmt.Sprintf("%d with draws or cards, %d with a full set (the pot's shares)", cc.GetHolders(), cc.GetFullSetHolders()))
	row(w, "split:", cc.GetSplit())
	row(w)
	row(w, "TYPE", "WEIGHT", "CAP", "ISSUED")
	for _, t := range cc.GetTypes() {
		cardCap := "-"
		if t.GetCap() != 0 {
			cardCap = strconv.FormatUint(t.GetCap(), 10)
		}
		row(w, t.GetId(), t.GetWeight(), cardCap, t.GetIssued())
	}
	if cc.GetSplit() {
		row(w)
		row(w, "USER", "PAYOUT")
		for _, p := range cc.GetPayouts() {
			row(w, p.GetUserId(), formatCents(p.GetCents()))
		}
	}
}

func holderTable(w io.Writer, h *pb.CardHolder) {
	row(w, "user:", h.GetUserId())
	row(w, "draws left:", fmt.Sprintf("%d of %d granted", h.GetDrawsLeft(), h.GetDrawsGranted()))
	var cards []string
	for _, c := range h.GetCards() {
		cards = append(cards, fmt.Sprintf("%s x%d", c.GetTypeId(), c.GetCount()))
	}
	row(w, "cards:", strings.Join(cards, ", "))
	row(w, "full sets:", h.GetFullSets())
	row(w, "rewards:", h.GetRewards())
}

func formatCents(c uint64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }
