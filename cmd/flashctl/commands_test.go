package main

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// decodeOne parses out as exactly one JSON document.
func decodeOne(t *testing.T, out string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, out)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("stdout holds more than one JSON document:\n%s", out)
	}
	return doc
}

// field walks doc along a path of object keys and array indexes.
func field(t *testing.T, doc any, path ...any) any {
	t.Helper()
	v := doc
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q in %v", path, p, doc)
			}
			if v, ok = m[p]; !ok {
				t.Fatalf("%v: no key %q in %v", path, p, m)
			}
		case int:
			a, ok := v.([]any)
			if !ok || p >= len(a) {
				t.Fatalf("%v: no element %d in %v", path, p, v)
			}
			v = a[p]
		}
	}
	return v
}

func TestJSONOutputShape(t *testing.T) {
	f := startFakeCluster(t)
	tests := []struct {
		args []string
		path []any
		want any
	}{
		{[]string{"cluster", "status"}, []any{"members", 0, "grpcAddr"}, "127.0.0.1:7001"},
		{[]string{"cluster", "status"}, []any{"members", 2, "error"}, "connection refused"},
		{[]string{"cluster", "status"}, []any{"members", 0, "status", "appliedIndex"}, "119"},
		{[]string{"cluster", "status"}, []any{"leaderRegion"}, "east"},
		{[]string{"cluster", "join", "--id", "n4", "--raft-addr", "h:7101", "--grpc-addr", "h:7001", "--region", "west", "--non-voter"},
			[]any{"joined", "nonVoter"}, true},
		{[]string{"cluster", "remove", "n3"}, []any{"removed"}, "n3"},
		{[]string{"cluster", "transfer-leader", "--region", "west"}, []any{"leaderId"}, "n2"},
		{[]string{"cluster", "snapshot"}, []any{"index"}, "120"},
		{[]string{"campaign", "create", "spring", "--start", "2026-03-01T09:00:00Z"}, []any{"state"}, "CAMPAIGN_STATE_DRAFT"},
		{[]string{"campaign", "get", "spring"}, []any{"items", 0, "id"}, "lantern"},
		{[]string{"campaign", "list"}, []any{"campaigns", 1, "id"}, "autumn"},
		{[]string{"campaign", "open", "spring"}, []any{"state"}, "CAMPAIGN_STATE_OPEN"},
		{[]string{"campaign", "close", "spring"}, []any{"state"}, "CAMPAIGN_STATE_CLOSED"},
		{[]string{"item", "add", "--campaign", "spring", "lantern", "--stock", "100"}, []any{"total"}, "100"},
		{[]string{"item", "get", "--campaign", "spring", "lantern"}, []any{"item", "available"}, "97"},
		{[]string{"item", "list", "--campaign", "spring"}, []any{"items", 1, "id"}, "kite"},
		{[]string{"stock", "add", "--campaign", "spring", "--item", "lantern", "5"}, []any{"sold"}, "1"},
		{[]string{"claim", "--campaign", "spring", "--item", "lantern", "--user", "bob", "--request-id", "r-7"}, []any{"requestId"}, "r-7"},
		{[]string{"claims", "list", "--user", "alice"}, []any{"claims", 0, "state"}, "CLAIM_STATE_RESERVED"},
		{[]string{"settle", "9"}, []any{"state"}, "CLAIM_STATE_SETTLED"},
		{[]string{"release", "9"}, []any{"id"}, "9"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := flashctl(t, f, append([]string{"-o", "json"}, tt.args...)...).ok(t)
			doc := decodeOne(t, r.stdout)
			if got := field(t, doc, tt.path...); got != tt.want {
				t.Errorf("%v = %#v, want %#v", tt.path, got, tt.want)
			}
		})
	}
}

func TestFlagsReachTheRequest(t *testing.T) {
	f := startFakeCluster(t)

	before := time.Now()
	flashctl(t, f, "campaign", "create", "cards", "--name", "Cards", "--kind", "card-collect", "--start", "+30s",
		"--end", "2030-01-01T00:00:00Z", "--per-user-limit", "2", "--waves", "3", "--wave-interval", "10s",
		"--reservation-ttl", "5m").ok(t)
	after := time.Now()
	c := f.request("CreateCampaign").(*pb.CreateCampaignRequest).GetCampaign()
	if start := c.GetStart().AsTime(); start.Before(before.Add(30*time.Second)) || start.After(after.Add(30*time.Second)) {
		t.Errorf("--start +30s sent %v, want 30s after %v", start, before)
	}
	if end := c.GetEnd().AsTime(); !end.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("--end sent %v", end)
	}
	if c.GetKind() != pb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT || c.GetPerUserLimit() != 2 || c.GetWaveCount() != 3 ||
		c.GetWaveInterval().AsDuration() != 10*time.Second || c.GetReservationTtl().AsDuration() != 5*time.Minute {
		t.Errorf("campaign sent: %v", c)
	}

	flashctl(t, f, "stock", "remove", "--campaign", "spring", "--item", "lantern", "7", "--request-id", "rm-1").ok(t)
	if adj := f.request("AdjustStock").(*pb.AdjustStockRequest); adj.GetDelta() != -7 || adj.GetRequestId() != "rm-1" {
		t.Errorf("stock remove sent %v", adj)
	}

	flashctl(t, f, "claim", "--campaign", "spring", "--item", "lantern", "--user", "bob", "--quantity", "2").ok(t)
	claim := f.request("ClaimBatch").(*pb.ClaimBatchRequest).GetClaims()[0]
	if claim.GetQuantity() != 2 || claim.GetUserId() != "bob" || len(claim.GetRequestId()) != 26 {
		t.Errorf("claim sent %v, want quantity 2 for bob with a new request ID", claim)
	}

	flashctl(t, f, "item", "get", "--campaign", "spring", "lantern", "--stale").ok(t)
	if get := f.request("GetItem").(*pb.GetItemRequest); get.GetConsistency() != pb.Consistency_CONSISTENCY_STALE {
		t.Errorf("--stale sent %v", get.GetConsistency())
	}

	flashctl(t, f, "cluster", "transfer-leader", "--to", "n3").ok(t)
	if tr := f.request("TransferLeadership").(*pb.TransferLeadershipRequest); tr.GetToId() != "n3" || tr.GetToRegion() != "" {
		t.Errorf("transfer-leader sent %v", tr)
	}
}

func TestClusterStatusTable(t *testing.T) {
	f := startFakeCluster(t)
	out := flashctl(t, f, "cluster", "status").ok(t).stdout
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "leader:") || !strings.Contains(lines[0], "n1 (region east, 127.0.0.1:7001)") {
		t.Errorf("first line %q does not name the leader and its region", lines[0])
	}
	want := map[string][]string{
		"n1": {"east", "voter", "*", "Leader", "120", "119", "9f86d081884c", "17"},
		"n2": {"west", "voter", "Follower", "ms"},
		"n3": {"north", "non-voter", "connection refused"},
	}
	header := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "ID ") {
			header = l
		}
		fields := strings.Fields(l)
		if len(fields) == 0 {
			continue
		}
		for _, cell := range want[fields[0]] {
			if !strings.Contains(l, cell) {
				t.Errorf("row %q lacks %q", l, cell)
			}
		}
		delete(want, fields[0])
	}
	if len(want) > 0 {
		t.Errorf("no rows for %v in:\n%s", want, out)
	}
	for _, col := range []string{"REGION", "VOTER", "LEADER", "STATE", "TERM", "COMMIT", "APPLIED", "LAST CONTACT", "DIGEST", "CLAIMS", "ERROR"} {
		if !strings.Contains(header, col) {
			t.Errorf("header %q lacks %s", header, col)
		}
	}
	if strings.Contains(out, "9f86d081884c7d") {
		t.Error("the digest is not shortened")
	}
}

func TestTablesAreAligned(t *testing.T) {
	f := startFakeCluster(t)
	out := flashctl(t, f, "item", "list", "--campaign", "spring").ok(t).stdout
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows, got:\n%s", out)
	}
	col := strings.Index(lines[0], "AVAILABLE")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("row %q is not aligned under AVAILABLE at %d", l, col)
		}
	}
}

func TestErrorsAreOneLineOnStderr(t *testing.T) {
	f := startFakeCluster(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"claim", "--campaign", "spring", "--item", "gone", "--user", "bob"},
			"flashctl: claim: sold out (SOLD_OUT): item gone is sold out\n"},
		{[]string{"-o", "json", "claim", "--campaign", "spring", "--item", "gone", "--user", "bob"},
			"flashctl: claim: sold out (SOLD_OUT): item gone is sold out\n"},
		{[]string{"campaign", "create", "spring"},
			"flashctl: campaign create: already exists (ALREADY_EXISTS): campaign spring exists\n"},
	}
	f.fail("CreateCampaign", refusal(codes.AlreadyExists, "ALREADY_EXISTS", "campaign spring exists"))
	for _, tt := range tests {
		r := flashctl(t, f, tt.args...)
		if r.code != exitFailure || r.stdout != "" || r.stderr != tt.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tt.args, r.code, r.stdout, r.stderr, tt.want)
		}
	}
}

func TestUnknownOutcomeNamesTheRequestID(t *testing.T) {
	f := startFakeCluster(t)
	f.fail("Settle", status.Error(codes.Unavailable, "no leader"))
	r := flashctl(t, f, "--timeout", "300ms", "settle", "12")
	if r.code != exitFailure {
		t.Fatalf("exit %d, want 1", r.code)
	}
	sent := f.request("Settle").(*pb.SettleRequest).GetRequestId()
	if sent == "" || !strings.Contains(r.stderr, "--request-id "+sent) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr %q should be one line naming request ID %q", r.stderr, sent)
	}
}

func TestUsageErrors(t *testing.T) {
	f := startFakeCluster(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"claim", "--campaign", "spring", "--item", "lantern"}, `required flag(s) "user" not set`},
		{[]string{"item", "add", "lantern", "--stock", "5", "--campaign", "spring", "--colour", "red"}, "unknown flag: --colour"},
		{[]string{"campaign", "create", "spring", "--kind", "raffle"}, "--kind"},
		{[]string{"campaign", "create", "spring", "--start", "tomorrow"}, "--start"},
		{[]string{"campaign", "get"}, "accepts 1 arg(s)"},
		{[]string{"stock", "add", "--campaign", "spring", "--item", "lantern", "-4"}, "unknown shorthand flag"},
		{[]string{"stock", "add", "--campaign", "spring", "--item", "lantern", "0"}, "positive whole number"},
		{[]string{"settle", "abc"}, "claim ID"},
		{[]string{"cluster", "transfer-leader", "--to", "n2", "--region", "west"}, "none of the others can be"},
		{[]string{"-o", "yaml", "cluster", "status"}, "--output"},
		{[]string{"bogus"}, `unknown command "bogus"`},
	}
	for _, tt := range tests {
		r := flashctl(t, f, tt.args...)
		if r.code != exitUsage || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q; want exit 2 and nothing on stdout", tt.args, r.code, r.stdout)
		}
		first, rest, _ := strings.Cut(r.stderr, "\n")
		if !strings.HasPrefix(first, "flashctl") || !strings.Contains(first, tt.want) {
			t.Errorf("%v: first line %q, want an error about %q", tt.args, first, tt.want)
		}
		if !strings.Contains(rest, "Usage:") {
			t.Errorf("%v: no usage after the error:\n%s", tt.args, r.stderr)
		}
	}
	if n := f.requestCount(); n != 0 {
		t.Errorf("bad usage reached the cluster %d times", n)
	}
}

func TestEndpointsFromTheEnvironment(t *testing.T) {
	f := startFakeCluster(t)
	env := map[string]string{endpointsEnv: f.addr}
	flashctlEnv(t, env, "-o", "json", "cluster", "snapshot").ok(t)
	if f.request("Snapshot") == nil {
		t.Fatal("FLASHCTL_ENDPOINTS was not used")
	}

	// --endpoints wins over the environment.
	other := startFakeCluster(t)
	flashctlEnv(t, env, "--endpoints", other.addr, "cluster", "snapshot").ok(t)
	if other.request("Snapshot") == nil {
		t.Error("--endpoints did not override FLASHCTL_ENDPOINTS")
	}
}

func TestHelpGoesToStdout(t *testing.T) {
	r := flashctl(t, nil, "--help").ok(t)
	for _, cmd := range []string{"cluster", "campaign", "item", "stock", "claim", "claims", "settle", "release"} {
		if !strings.Contains(r.stdout, "\n  "+cmd+" ") {
			t.Errorf("help does not list %s:\n%s", cmd, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, defaultEndpoints) {
		t.Error("help does not show the default endpoints")
	}
}

func refusal(code codes.Code, reason, msg string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "flashd"})
	if err != nil {
		panic(err)
	}
	return st.Err()
}
