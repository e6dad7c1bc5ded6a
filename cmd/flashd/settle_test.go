package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestSettlerNeedsCampaigns: `flashd settler` refuses to start without
// --campaign, and its help says whose claims it settles.
func TestSettlerNeedsCampaigns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"settler", "--store", "127.0.0.1:1", "--order-url", "http://127.0.0.1:1/orders"},
		{"settler", "--store", "127.0.0.1:1", "--order-url", "http://127.0.0.1:1/orders", "--campaign", "bad\x01id"},
	} {
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		if err := root.ExecuteContext(ctx); err == nil || !strings.Contains(err.Error(), "campaign") {
			t.Errorf("flashd %q: %v, want a refusal naming the campaign", args, err)
		}
	}
	cmd := newSettlerCmd()
	if !strings.Contains(cmd.Long, "--campaign") || !strings.Contains(cmd.Flag("campaign").Usage, "required") {
		t.Errorf("help does not say which campaigns the worker settles:\n%s\n--campaign: %q", cmd.Long, cmd.Flag("campaign").Usage)
	}
}
