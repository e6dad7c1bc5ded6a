package main

import (
	"context"
	"strings"
	"testing"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

func (f *fakeCluster) DefineCards(_ context.Context, req *pb.DefineCardsRequest) (*pb.CardCollect, error) {
	if err := f.record("DefineCards", req); err != nil {
		return nil, err
	}
	return &pb.CardCollect{CampaignId: req.GetCampaignId(), Types: req.GetTypes(), SetTypes: req.GetSetTypes(), RewardPool: req.GetRewardPool()}, nil
}

func (f *fakeCluster) CloseAndSplit(_ context.Context, req *pb.CloseAndSplitRequest) (*pb.CardCollect, error) {
	if err := f.record("CloseAndSplit", req); err != nil {
		return nil, err
	}
	return &pb.CardCollect{
		CampaignId: req.GetCampaignId(), PotCents: 1001, Split: true,
		Payouts: []*pb.Payout{{UserId: "alice", Cents: 334}, {UserId: "bob", Cents: 334}, {UserId: "carol", Cents: 333}},
	}, nil
}

func (f *fakeCluster) GrantDraws(_ context.Context, req *pb.GrantDrawsRequest) (*pb.GrantDrawsResponse, error) {
	if err := f.record("GrantDraws", req); err != nil {
		return nil, err
	}
	return &pb.GrantDrawsResponse{Holder: &pb.CardHolder{UserId: req.GetUserId(), DrawsLeft: uint64(req.GetCount())}}, nil
}

func (f *fakeCluster) GetCardCollect(_ context.Context, req *pb.GetCardCollectRequest) (*pb.GetCardCollectResponse, error) {
	if err := f.record("GetCardCollect", req); err != nil {
		return nil, err
	}
	return &pb.GetCardCollectResponse{Cards: &pb.CardCollect{
		CampaignId: req.GetCampaignId(), SetTypes: []string{"fu", "shou"}, PotCents: 1000, Holders: 3, FullSetHolders: 1,
	}}, nil
}

// TestCardsShowCountsFullSetHolders: cards show tells the users with draws
// or cards from those holding a full set, who share the pot.
func TestCardsShowCountsFullSetHolders(t *testing.T) {
	f := startFakeCluster(t)
	out := flashctl(t, f, "cards", "show", "spring").ok(t).stdout
	if !strings.Contains(out, "3 with draws or cards, 1 with a full set (the pot's shares)") {
		t.Errorf("cards show, 3 holders and 1 full set:\n%s", out)
	}
}

func TestCardsCommands(t *testing.T) {
	f := startFakeCluster(t)
	flashctl(t, f, "cards", "define", "spring", "--type", "fu:60", "--type", "shou:10:500", "--set", "fu,shou",
		"--pool", "100", "--pot-cents", "5000", "--draws-per-user-max", "20").ok(t)
	def := f.request("DefineCards").(*pb.DefineCardsRequest)
	if len(def.Types) != 2 || def.Types[1].GetCap() != 500 || def.Types[0].GetWeight() != 60 ||
		strings.Join(def.SetTypes, ",") != "fu,shou" || def.RewardPool != 100 || def.PotCents != 5000 || def.DrawsPerUserMax != 20 {
		t.Errorf("define sent %v", def)
	}
	flashctl(t, f, "cards", "grant", "spring", "--user", "alice", "--count", "3", "--request-id", "g-1").ok(t)
	if g := f.request("GrantDraws").(*pb.GrantDrawsRequest); g.GetCount() != 3 || g.GetRequestId() != "g-1" || g.GetUserId() != "alice" {
		t.Errorf("grant sent %v", g)
	}
	out := flashctl(t, f, "cards", "close-split", "spring").ok(t).stdout
	if !strings.Contains(out, "alice") || !strings.Contains(out, "3.34") || !strings.Contains(out, "3.33") {
		t.Errorf("close-split shows:\n%s", out)
	}
	for _, bad := range []string{"fu", "fu:0", "fu:1:0", ":3", "fu:x"} {
		if r := flashctl(t, f, "cards", "define", "spring", "--type", bad, "--set", "fu"); r.code != exitUsage {
			t.Errorf("--type %q: exit %d, want a usage error", bad, r.code)
		}
	}
}
