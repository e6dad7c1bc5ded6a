package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

func newItemCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "item",
		Short: "Add and inspect a campaign's items",
	}
	cmd.AddCommand(newItemAddCmd(g), newItemGetCmd(g), newItemListCmd(g))
	return cmd
}

func newItemAddCmd(g *globals) *cobra.Command {
	req := &pb.AddItemRequest{}
	cmd := &cobra.Command{
		Use:     "add --campaign C ID --stock N",
		Short:   "Add an item with its stock to a campaign",
		Example: `  flashctl item add --campaign spring lantern --stock 1000 --per-user-limit 2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.ItemId = args[0]
			return runItemAdd(cmd, g, req)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.CampaignId, "campaign", "", "campaign ID (required)")
	fl.Uint64Var(&req.Stock, "stock", 0, "units on sale (required)")
	fl.Uint32Var(&req.PerUserLimit, "per-user-limit", 0, "claims per user (0: the campaign's)")
	requireFlags(cmd, "campaign", "stock")
	return cmd
}

func runItemAdd(cmd *cobra.Command, g *globals, req *pb.AddItemRequest) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		item, err := st.AddItem(ctx, req)
		if err != nil {
			return err
		}
		return g.render(item, func(w io.Writer) { itemsTable(w, []*pb.Item{item}) })
	})
}

func newItemGetCmd(g *globals) *cobra.Command {
	var (
		campaign string
		stale    bool
	)
	cmd := &cobra.Command{
		Use:   "get --campaign C ID",
		Short: "Show an item's stock counters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runItemGet(cmd, g, &pb.GetItemRequest{CampaignId: campaign, ItemId: args[0], Consistency: consistency(stale)})
		},
	}
	cmd.Flags().StringVar(&campaign, "campaign", "", "campaign ID (required)")
	addStaleFlag(cmd, &stale)
	requireFlags(cmd, "campaign")
	return cmd
}

func runItemGet(cmd *cobra.Command, g *globals, req *pb.GetItemRequest) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.GetItem(ctx, req)
		if err != nil {
			return err
		}
		return g.render(resp, func(w io.Writer) {
			itemsTable(w, []*pb.Item{resp.GetItem()})
			staleNote(w, req.GetConsistency() == pb.Consistency_CONSISTENCY_STALE, resp.GetIndex())
		})
	})
}

func newItemListCmd(g *globals) *cobra.Command {
	var (
		campaign string
		stale    bool
	)
	cmd := &cobra.Command{
		Use:   "list --campaign C",
		Short: "List a campaign's items and their stock",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runItemList(cmd, g, &pb.ListItemsRequest{CampaignId: campaign, Consistency: consistency(stale)})
		},
	}
	cmd.Flags().StringVar(&campaign, "campaign", "", "campaign ID (required)")
	addStaleFlag(cmd, &stale)
	requireFlags(cmd, "campaign")
	return cmd
}

func runItemList(cmd *cobra.Command, g *globals, req *pb.ListItemsRequest) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.ListItems(ctx, req)
		if err != nil {
			return err
		}
		return g.render(resp, func(w io.Writer) {
			itemsTable(w, resp.GetItems())
			staleNote(w, req.GetConsistency() == pb.Consistency_CONSISTENCY_STALE, resp.GetIndex())
		})
	})
}

func newStockCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stock",
		Short: "Add stock to an item or remove available stock from it",
	}
	cmd.AddCommand(
		newStockAdjustCmd(g, "add", "Add N units to an item's stock", 1),
		newStockAdjustCmd(g, "remove", "Remove N available units from an item's stock", -1),
	)
	return cmd
}

// newStockAdjustCmd makes stock add (sign 1) and stock remove (sign -1).
func newStockAdjustCmd(g *globals, verb, short string, sign int64) *cobra.Command {
	req := &pb.AdjustStockRequest{}
	cmd := &cobra.Command{
		Use:   verb + " --campaign C --item I N",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseAmount("N", args[0])
			if err != nil {
				return err
			}
			req.Delta = sign * int64(n)
			return runStockAdjust(cmd, g, req)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.CampaignId, "campaign", "", "campaign ID (required)")
	fl.StringVar(&req.ItemId, "item", "", "item ID (required)")
	addRequestIDFlag(cmd, &req.RequestId)
	requireFlags(cmd, "campaign", "item")
	return cmd
}

func runStockAdjust(cmd *cobra.Command, g *globals, req *pb.AdjustStockRequest) error {
	ensureRequestID(&req.RequestId)
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		item, err := st.AdjustStock(ctx, req)
		if err != nil {
			return retryHint(err, req.GetRequestId())
		}
		return g.render(item, func(w io.Writer) { itemsTable(w, []*pb.Item{item}) })
	})
}

func itemsTable(w io.Writer, items []*pb.Item) {
	row(w, "CAMPAIGN", "ITEM", "TOTAL", "AVAILABLE", "RESERVED", "SOLD", "PER-USER LIMIT")
	for _, it := range items {
		row(w, it.GetCampaignId(), it.GetId(), it.GetTotal(), it.GetAvailable(), it.GetReserved(), it.GetSold(), it.GetPerUserLimit())
	}
}
