package rpc

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/fsm"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Conversions between the state machine's views and the API messages. The
// enums share numbers (fsm/types.go), so they convert with casts.

func campaignToPB(c fsm.Campaign) *pb.Campaign {
	return &pb.Campaign{
		Id: c.ID, Kind: pb.CampaignKind(c.Kind), Name: c.Name,
		Start: timeToPB(c.Start), End: timeToPB(c.End),
		PerUserLimit: c.PerUserLimit, WaveCount: c.WaveCount,
		WaveInterval: durationpb.New(c.WaveInterval), ReservationTtl: durationpb.New(c.ReservationTTL),
		State: pb.CampaignState(c.State),
	}
}

func itemToPB(i fsm.Item) *pb.Item {
	return &pb.Item{
		CampaignId: i.CampaignID, Id: i.ID, Total: i.Total, Available: i.Available,
		Reserved: i.Reserved, Sold: i.Sold, PerUserLimit: i.PerUserLimit,
	}
}

func claimToPB(c fsm.Claim) *pb.Claim {
	return &pb.Claim{
		Id: c.ID, CampaignId: c.CampaignID, ItemId: c.ItemID, UserId: c.UserID,
		Quantity: c.Quantity, State: pb.ClaimState(c.State),
		Created: timeToPB(c.Created), Deadline: timeToPB(c.Deadline), RequestId: c.RequestID,
	}
}

func configToPB(c fsm.FrontDoorConfig) *pb.FrontDoorConfig {
	return &pb.FrontDoorConfig{
		Version: c.Version, GlobalRate: c.GlobalRate, PerUserRate: c.PerUserRate, PerIpRate: c.PerIPRate,
		DegradeLevel: c.DegradeLevel, DropFraction: c.DropFraction, DegradeAuto: c.DegradeAuto,
	}
}

// timeToPB maps the zero time ("none") to an unset timestamp.
func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// unixNano maps an unset timestamp to 0 ("none").
func unixNano(ts *timestamppb.Timestamp) int64 {
	if ts == nil {
		return 0
	}
	return ts.AsTime().UnixNano()
}

func mapSlice[A, B any](in []A, f func(A) B) []B {
	out := make([]B, len(in))
	for i, a := range in {
		out[i] = f(a)
	}
	return out
}
