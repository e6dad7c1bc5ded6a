package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

const claimStatePrefix = "CLAIM_STATE_"

// claimFlags are claim's flags.
type claimFlags struct {
	campaign, item, user, requestID string
	quantity                        uint32
}

func newClaimCmd(g *globals) *cobra.Command {
	var f claimFlags
	cmd := &cobra.Command{
		Use:     "claim --campaign C --item I --user U",
		Short:   "Claim (reserve) an item for a user, as a service would",
		Example: `  flashctl claim --campaign spring --item lantern --user alice --quantity 2`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runClaim(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.campaign, "campaign", "", "campaign ID (required)")
	fl.StringVar(&f.item, "item", "", "item ID (required)")
	fl.StringVar(&f.user, "user", "", "user ID (required)")
	fl.Uint32Var(&f.quantity, "quantity", 1, "units to claim")
	addRequestIDFlag(cmd, &f.requestID)
	requireFlags(cmd, "campaign", "item", "user")
	return cmd
}

func runClaim(cmd *cobra.Command, g *globals, f claimFlags) error {
	ensureRequestID(&f.requestID)
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		claim, err := st.Claim(ctx, f.campaign, f.item, f.user, f.quantity, f.requestID)
		if err != nil {
			return retryHint(err, f.requestID)
		}
		return g.render(claim, func(w io.Writer) { claimTable(w, claim) })
	})
}

func newClaimsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "claims",
		Short: "Inspect claims",
	}
	cmd.AddCommand(newClaimsListCmd(g))
	return cmd
}

func newClaimsListCmd(g *globals) *cobra.Command {
	var stale bool
	req := &pb.ListClaimsRequest{}
	cmd := &cobra.Command{
		Use:   "list --user U",
		Short: "List a user's claims",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.Consistency = consistency(stale)
			return runClaimsList(cmd, g, req)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.UserId, "user", "", "user ID (required)")
	fl.StringVar(&req.CampaignId, "campaign", "", "only this campaign's claims")
	addStaleFlag(cmd, &stale)
	requireFlags(cmd, "user")
	return cmd
}

func runClaimsList(cmd *cobra.Command, g *globals, req *pb.ListClaimsRequest) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.ListClaims(ctx, req)
		if err != nil {
			return err
		}
		return g.render(resp, func(w io.Writer) {
			row(w, "CLAIM", "CAMPAIGN", "ITEM", "USER", "QUANTITY", "STATE", "CREATED", "DEADLINE", "REQUEST ID")
			for _, c := range resp.GetClaims() {
				row(w, c.GetId(), c.GetCampaignId(), c.GetItemId(), c.GetUserId(), c.GetQuantity(),
					enumName(c.GetState().String(), claimStatePrefix), formatTime(c.GetCreated()),
					formatTime(c.GetDeadline()), dash(c.GetRequestId()))
			}
			staleNote(w, req.GetConsistency() == pb.Consistency_CONSISTENCY_STALE, resp.GetIndex())
		})
	})
}

func newSettleCmd(g *globals) *cobra.Command {
	var requestID string
	cmd := &cobra.Command{
		Use:   "settle CLAIM-ID",
		Short: "Confirm a reserved claim: its stock is sold",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseClaimID(args[0])
			if err != nil {
				return err
			}
			return runSettle(cmd, g, &pb.SettleRequest{ClaimId: id, RequestId: requestID})
		},
	}
	addRequestIDFlag(cmd, &requestID)
	return cmd
}

func runSettle(cmd *cobra.Command, g *globals, req *pb.SettleRequest) error {
	ensureRequestID(&req.RequestId)
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.Settle(ctx, req)
		if err != nil {
			return retryHint(err, req.GetRequestId())
		}
		return g.render(resp.GetClaim(), func(w io.Writer) { claimTable(w, resp.GetClaim()) })
	})
}

func newReleaseCmd(g *globals) *cobra.Command {
	var requestID string
	cmd := &cobra.Command{
		Use:   "release CLAIM-ID",
		Short: "Undo a reserved claim: its stock goes back on sale",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseClaimID(args[0])
			if err != nil {
				return err
			}
			return runRelease(cmd, g, &pb.ReleaseRequest{ClaimId: id, RequestId: requestID})
		},
	}
	addRequestIDFlag(cmd, &requestID)
	return cmd
}

func runRelease(cmd *cobra.Command, g *globals, req *pb.ReleaseRequest) error {
	ensureRequestID(&req.RequestId)
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.Release(ctx, req)
		if err != nil {
			return retryHint(err, req.GetRequestId())
		}
		return g.render(resp.GetClaim(), func(w io.Writer) { claimTable(w, resp.GetClaim()) })
	})
}

// claimTable shows one claim, a field a line.
func claimTable(w io.Writer, c *pb.Claim) {
	row(w, "claim:", c.GetId())
	row(w, "campaign:", c.GetCampaignId())
	row(w, "item:", c.GetItemId())
	row(w, "user:", c.GetUserId())
	row(w, "quantity:", c.GetQuantity())
	row(w, "state:", enumName(c.GetState().String(), claimStatePrefix))
	row(w, "created:", formatTime(c.GetCreated()))
	row(w, "deadline:", formatTime(c.GetDeadline()))
	row(w, "request id:", dash(c.GetRequestId()))
}
