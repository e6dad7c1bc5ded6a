package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

const (
	campaignKindPrefix  = "CAMPAIGN_KIND_"
	campaignStatePrefix = "CAMPAIGN_STATE_"
)

func newCampaignCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "campaign",
		Short: "Create, inspect, open and close campaigns",
	}
	cmd.AddCommand(
		newCampaignCreateCmd(g),
		newCampaignGetCmd(g),
		newCampaignListCmd(g),
		newCampaignStateCmd(g, "open", "Open a campaign: claims are accepted from its start time", pb.CampaignState_CAMPAIGN_STATE_OPEN),
		newCampaignStateCmd(g, "close", "Close a campaign: no more claims", pb.CampaignState_CAMPAIGN_STATE_CLOSED),
	)
	return cmd
}

// campaignFlags are campaign create's flags, as typed.
type campaignFlags struct {
	name, kind, start, end       string
	perUserLimit, waves          uint32
	waveInterval, reservationTTL time.Duration
}

func newCampaignCreateCmd(g *globals) *cobra.Command {
	var f campaignFlags
	cmd := &cobra.Command{
		Use:   "create ID",
		Short: "Create a campaign, in state draft (campaign open starts the sale)",
		Example: `  flashctl campaign create spring --name "Spring sale" --start +10m --end +1h --per-user-limit 1
  flashctl campaign create cards --kind card-collect --start 2026-03-01T09:00:00Z --waves 4 --wave-interval 30s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runCampaignCreate(cmd, g, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "display name")
	fl.StringVar(&f.kind, "kind", "flash-sale", "flash-sale or card-collect")
	fl.StringVar(&f.start, "start", "now", "start time: now, +DURATION (+30s) or RFC 3339")
	fl.StringVar(&f.end, "end", "", "end time, as --start (default: no end)")
	fl.Uint32Var(&f.perUserLimit, "per-user-limit", 1, "claims per user and item, by default")
	fl.Uint32Var(&f.waves, "waves", 1, "entry waves users are hashed into")
	fl.DurationVar(&f.waveInterval, "wave-interval", 0, "time between the openings of two waves")
	fl.DurationVar(&f.reservationTTL, "reservation-ttl", 0, "how long a claim stays reserved unless settled (0: no expiry)")
	return cmd
}

// campaign builds the campaign the flags describe, with times relative to
// now.
func (f campaignFlags) campaign(id string, now time.Time) (*pb.Campaign, error) {
	kind, ok := enumValue(f.kind, campaignKindPrefix, pb.CampaignKind_value)
	if !ok {
		return nil, fmt.Errorf("--kind %q: want flash-sale or card-collect", f.kind)
	}
	start, err := parseTime(f.start, now)
	if err != nil {
		return nil, fmt.Errorf("--start %w", err)
	}
	if start.IsZero() {
		return nil, fmt.Errorf("--start: a campaign needs a start time")
	}
	end, err := parseTime(f.end, now)
	if err != nil {
		return nil, fmt.Errorf("--end %w", err)
	}
	if !end.IsZero() && !end.After(start) {
		return nil, fmt.Errorf("--end %s is not after --start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	if f.waveInterval < 0 || f.reservationTTL < 0 {
		return nil, fmt.Errorf("--wave-interval and --reservation-ttl must not be negative")
	}
	c := &pb.Campaign{
		Id:             id,
		Kind:           pb.CampaignKind(kind),
		Name:           f.name,
		Start:          timestamppb.New(start),
		PerUserLimit:   f.perUserLimit,
		WaveCount:      f.waves,
		WaveInterval:   durationpb.New(f.waveInterval),
		ReservationTtl: durationpb.New(f.reservationTTL),
	}
	if !end.IsZero() {
		c.End = timestamppb.New(end)
	}
	return c, nil
}

func runCampaignCreate(cmd *cobra.Command, g *globals, id string, f campaignFlags) error {
	c, err := f.campaign(id, time.Now())
	if err != nil {
		return err
	}
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		created, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: c})
		if err != nil {
			return err
		}
		return g.render(created, func(w io.Writer) { campaignTable(w, created) })
	})
}

func newCampaignGetCmd(g *globals) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a campaign and its items",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runCampaignGet(cmd, g, args[0], stale) },
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func runCampaignGet(cmd *cobra.Command, g *globals, id string, stale bool) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.GetCampaign(ctx, &pb.GetCampaignRequest{CampaignId: id, Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		return g.render(resp, func(w io.Writer) {
			campaignTable(w, resp.GetCampaign())
			row(w)
			itemsTable(w, resp.GetItems())
			staleNote(w, stale, resp.GetIndex())
		})
	})
}

func newCampaignListCmd(g *globals) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every campaign",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runCampaignList(cmd, g, stale) },
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func runCampaignList(cmd *cobra.Command, g *globals, stale bool) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		resp, err := st.ListCampaigns(ctx, &pb.ListCampaignsRequest{Consistency: consistency(stale)})
		if err != nil {
			return err
		}
		return g.render(resp, func(w io.Writer) {
			row(w, "ID", "NAME", "KIND", "STATE", "START", "END", "PER-USER LIMIT", "WAVES")
			for _, c := range resp.GetCampaigns() {
				row(w, c.GetId(), dash(c.GetName()), enumName(c.GetKind().String(), campaignKindPrefix),
					enumName(c.GetState().String(), campaignStatePrefix), formatTime(c.GetStart()),
					formatTime(c.GetEnd()), c.GetPerUserLimit(), c.GetWaveCount())
			}
			staleNote(w, stale, resp.GetIndex())
		})
	})
}

// newCampaignStateCmd makes campaign open and campaign close.
func newCampaignStateCmd(g *globals, verb, short string, state pb.CampaignState) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runCampaignState(cmd, g, args[0], state) },
	}
}

func runCampaignState(cmd *cobra.Command, g *globals, id string, state pb.CampaignState) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		updated, err := st.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: id, State: &state})
		if err != nil {
			return err
		}
		return g.render(updated, func(w io.Writer) { campaignTable(w, updated) })
	})
}

// campaignTable shows one campaign, a field a line.
func campaignTable(w io.Writer, c *pb.Campaign) {
	row(w, "campaign:", c.GetId())
	row(w, "name:", dash(c.GetName()))
	row(w, "kind:", enumName(c.GetKind().String(), campaignKindPrefix))
	row(w, "state:", enumName(c.GetState().String(), campaignStatePrefix))
	row(w, "start:", formatTime(c.GetStart()))
	row(w, "end:", formatTime(c.GetEnd()))
	row(w, "per-user limit:", c.GetPerUserLimit())
	row(w, "waves:", fmt.Sprintf("%d, %s apart", c.GetWaveCount(), formatDuration(c.GetWaveInterval())))
	ttl := formatDuration(c.GetReservationTtl())
	if c.GetReservationTtl().AsDuration() == 0 {
		ttl = "none (reservations never expire)"
	}
	row(w, "reservation ttl:", ttl)
}

func addStaleFlag(cmd *cobra.Command, stale *bool) {
	cmd.Flags().BoolVar(stale, "stale", false, "read from any node's applied state, not through the leader")
}

func consistency(stale bool) pb.Consistency {
	if stale {
		return pb.Consistency_CONSISTENCY_STALE
	}
	return pb.Consistency_CONSISTENCY_LINEARIZABLE
}

// staleNote says which log index a stale read reflects.
func staleNote(w io.Writer, stale bool, index uint64) {
	if stale {
		row(w)
		row(w, fmt.Sprintf("stale read, as of log index %d", index))
	}
}
