package main

import (
	"strings"
	"testing"
	"time"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"now", now},
		{"+30s", now.Add(30 * time.Second)},
		{"+1h30m", now.Add(90 * time.Minute)},
		{"+0s", now},
		{"2026-03-01T10:00:00Z", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"2026-03-01T10:00:00+02:00", time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		got, err := parseTime(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"tomorrow", "+", "+30", "+-5s", "-30s", "30s", "2026-03-01", "2026-03-01 10:00:00", "NOW"} {
		if got, err := parseTime(bad, now); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", bad, got)
		}
	}
}

func TestCampaignFlags(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	f := campaignFlags{
		name: "Cards", kind: "card-collect", start: "+30s", end: "2026-03-02T00:00:00Z",
		perUserLimit: 3, waves: 4, waveInterval: time.Minute, reservationTTL: 5 * time.Minute,
	}
	c, err := f.campaign("cards", now)
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	want := &pb.Campaign{Id: "cards", Kind: pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, Name: "Cards", PerUserLimit: 3, WaveCount: 4}
	if c.GetId() != want.GetId() || c.GetKind() != want.GetKind() || c.GetName() != want.GetName() ||
		c.GetPerUserLimit() != 3 || c.GetWaveCount() != 4 {
		t.Errorf("campaign = %v, want %v", c, want)
	}
	if got := c.GetStart().AsTime(); !got.Equal(now.Add(30 * time.Second)) {
		t.Errorf("start = %v", got)
	}
	if got := c.GetEnd().AsTime(); !got.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("end = %v", got)
	}
	if c.GetWaveInterval().AsDuration() != time.Minute || c.GetReservationTtl().AsDuration() != 5*time.Minute {
		t.Errorf("durations = %v, %v", c.GetWaveInterval(), c.GetReservationTtl())
	}

	f.end = ""
	if c, err := f.campaign("cards", now); err != nil || c.GetEnd() != nil {
		t.Errorf("no --end: end %v, err %v; want unset", c.GetEnd(), err)
	}

	bad := []struct {
		name string
		edit func(*campaignFlags)
		want string
	}{
		{"unknown kind", func(f *campaignFlags) { f.kind = "raffle" }, "--kind"},
		{"unspecified kind", func(f *campaignFlags) { f.kind = "unspecified" }, "--kind"},
		{"bad start", func(f *campaignFlags) { f.start = "soon" }, "--start"},
		{"no start", func(f *campaignFlags) { f.start = "" }, "--start"},
		{"end before start", func(f *campaignFlags) { f.start, f.end = "+1h", "+30m" }, "not after"},
		{"negative ttl", func(f *campaignFlags) { f.reservationTTL = -time.Second }, "negative"},
	}
	for _, tt := range bad {
		g := f
		tt.edit(&g)
		if _, err := g.campaign("cards", now); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one about %s", tt.name, err, tt.want)
		}
	}
}

func TestEnumNames(t *testing.T) {
	if got := enumName(pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE.String(), campaignKindPrefix); got != "flash-sale" {
		t.Errorf("enumName = %q", got)
	}
	if got := enumName(pb.ClaimState_CLAIM_STATE_UNSPECIFIED.String(), claimStatePrefix); got != "-" {
		t.Errorf("enumName of the zero value = %q", got)
	}
	if v, ok := enumValue("flash-sale", campaignKindPrefix, pb.CampaignKind_value); !ok || v != int32(pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE) {
		t.Errorf("enumValue(flash-sale) = %v, %v", v, ok)
	}
}

func TestParseAmount(t *testing.T) {
	if n, err := parseAmount("N", "25"); err != nil || n != 25 {
		t.Errorf("parseAmount(25) = %d, %v", n, err)
	}
	for _, bad := range []string{"0", "-3", "1.5", "x", "9223372036854775808"} {
		if _, err := parseAmount("N", bad); err == nil {
			t.Errorf("parseAmount(%q) succeeded", bad)
		}
	}
}
