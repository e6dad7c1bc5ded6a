package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flashd/flashd/deploy/chaos/check"
)

var topo = Topology{Regions: []Region{{"east", []string{"n1", "n2"}}, {"west", []string{"n3", "n4"}}, {"north", []string{"n5"}}}}

func TestScheduleIsBoundedAndSequential(t *testing.T) {
	tm := Timing{Warmup: time.Second, Cooldown: 2 * time.Second, FaultMin: time.Second, FaultMax: 3 * time.Second, GapMin: 500 * time.Millisecond, GapMax: time.Second}
	const duration = time.Minute
	kinds := map[string]int{}
	for seed := uint64(1); seed <= 200; seed++ {
		s := Schedule(seed, duration, AllFaults, topo, tm)
		if len(s) == 0 {
			t.Fatalf("seed %d: empty schedule", seed)
		}
		end := tm.Warmup
		for _, f := range s {
			kinds[f.Kind]++
			switch {
			case f.At < end:
				t.Fatalf("seed %d: %v at %v overlaps the previous fault (ends %v)", seed, f, f.At, end)
			case f.At+f.Duration > duration-tm.Cooldown:
				t.Fatalf("seed %d: %v runs into the cooldown", seed, f)
			case (f.Kind == FaultRestart || f.Kind == FaultLeaderTransfer) != (f.Duration == 0):
				t.Fatalf("seed %d: %v has duration %v", seed, f, f.Duration)
			}
			end = f.At + f.Duration
			if f.Kind == FaultPartition {
				checkGroups(t, f)
			}
		}
	}
	for _, k := range AllFaults {
		if kinds[k] == 0 {
			t.Fatalf("200 seeds never drew %s: %v", k, kinds)
		}
	}
	if s := Schedule(1, duration, nil, topo, tm); s != nil {
		t.Fatalf("no kinds, schedule %v", s)
	}
}

func checkGroups(t *testing.T, f Fault) {
	t.Helper()
	regions := []string{"east", "west", "north", Leader}
	for _, g := range f.Groups {
		for _, r := range g {
			if !slices.Contains(regions, r) {
				t.Fatalf("%v names region %q", f, r)
			}
		}
	}
	switch f.Partition {
	case PartitionIsolate:
		if len(f.Groups) != 1 || len(f.Groups[0]) != 1 {
			t.Fatalf("%v: groups %v", f, f.Groups)
		}
	case PartitionSplit:
		if len(f.Groups) != 2 || len(f.Groups[0])+len(f.Groups[1]) != 3 {
			t.Fatalf("%v: groups %v", f, f.Groups)
		}
		for _, r := range f.Groups[0] {
			if slices.Contains(f.Groups[1], r) {
				t.Fatalf("%v: %s on both sides", f, r)
			}
		}
	case PartitionOneway:
		if len(f.Groups) != 2 || f.Groups[0][0] == f.Groups[1][0] {
			t.Fatalf("%v: groups %v", f, f.Groups)
		}
	default:
		t.Fatalf("%v: mode %q", f, f.Partition)
	}
}

func TestParseFaults(t *testing.T) {
	got, err := ParseFaults("kill, pause,kill,,leader-transfer")
	if err != nil || !slices.Equal(got, []string{FaultKill, FaultPause, FaultLeaderTransfer}) {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := ParseFaults("kill,meteor"); err == nil {
		t.Fatal("unknown fault accepted")
	}
}

func TestMeasureFault(t *testing.T) {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	calls := []check.Call{
		{Start: ms(0), End: ms(10), Outcome: check.Granted},
		{Start: ms(100), End: ms(110), Outcome: check.Granted},   // in the fault
		{Start: ms(120), End: ms(900), Outcome: check.Unknown},   // in the fault, never answered
		{Start: ms(150), End: ms(160), Outcome: check.SoldOut},   // in the fault
		{Start: ms(1000), End: ms(1400), Outcome: check.Granted}, // first grant after the heal at 900
	}
	fr := FaultResult{Injected: ms(100), Healed: ms(900)}
	measureFault(&fr, calls)
	if fr.Calls != 3 || fr.Definite != 2 || fr.Granted != 1 {
		t.Fatalf("calls %d definite %d granted %d", fr.Calls, fr.Definite, fr.Granted)
	}
	if fr.Recovery != ms(500) || fr.Outage != ms(1290) {
		t.Fatalf("recovery %v outage %v", time.Duration(fr.Recovery), time.Duration(fr.Outage))
	}
}

// fakeStore is a store in a map, correct or with its per-user check
// skipped, to test the runner without a cluster.
type fakeStore struct {
	mu        sync.Mutex
	skipLimit bool
	items     map[string]*check.FinalItem
	limits    map[string]uint32
	claims    []check.FinalClaim
	byRequest map[string]check.FinalClaim
	injected  []string
}

func (s *fakeStore) Setup(_ context.Context, items []check.ItemSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items, s.limits, s.byRequest = map[string]*check.FinalItem{}, map[string]uint32{}, map[string]check.FinalClaim{}
	for _, it := range items {
		s.items[it.Key()] = &check.FinalItem{Campaign: it.Campaign, Item: it.Item, Total: it.Stock, Available: it.Stock}
		s.limits[it.Key()] = it.PerUserLimit
	}
	return nil
}

func (s *fakeStore) Claim(_ context.Context, r ClaimRequest) ClaimResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byRequest[r.RequestID]; ok {
		return ClaimResult{Outcome: check.Granted, ClaimID: c.ID}
	}
	key := r.Campaign + "/" + r.Item
	it := s.items[key]
	var held uint32
	for _, c := range s.claims {
		if c.User == r.User && c.Campaign == r.Campaign && c.Item == r.Item {
			held += c.Quantity
		}
	}
	switch {
	case !s.skipLimit && held+r.Quantity > s.limits[key]:
		return ClaimResult{Outcome: check.LimitReached}
	case it.Available < uint64(r.Quantity):
		return ClaimResult{Outcome: check.SoldOut}
	}
	it.Available -= uint64(r.Quantity)
	it.Reserved += uint64(r.Quantity)
	c := check.FinalClaim{ID: uint64(len(s.claims) + 1), Campaign: r.Campaign, Item: r.Item, User: r.User,
		RequestID: r.RequestID, Quantity: r.Quantity, State: check.ClaimReserved}
	s.claims = append(s.claims, c)
	s.byRequest[r.RequestID] = c
	return ClaimResult{Outcome: check.Granted, ClaimID: c.ID}
}

func (s *fakeStore) Final(context.Context, []check.ItemSpec, []string) check.Final {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := check.Final{Claims: slices.Clone(s.claims), Nodes: []check.NodeState{{ID: "only", AppliedIndex: 1, Digest: "d"}}}
	for _, it := range s.items {
		f.Items = append(f.Items, *it)
	}
	return f
}

func (s *fakeStore) Inject(_ context.Context, f Fault) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injected = append(s.injected, f.String())
	return "", nil
}

func (s *fakeStore) Heal(context.Context, Fault, string) error { return nil }
func (s *fakeStore) HealAll(context.Context) error             { return nil }

func fastConfig(seed uint64) Config {
	return Config{
		Seed: seed, Duration: 600 * time.Millisecond, Faults: AllFaults, Topology: topo,
		Timing:  Timing{Warmup: 50 * time.Millisecond, FaultMin: 50 * time.Millisecond, FaultMax: 100 * time.Millisecond, GapMin: 20 * time.Millisecond, GapMax: 50 * time.Millisecond},
		Workers: 4, Think: time.Millisecond, Users: 10, Items: 2, CampaignEvery: 200 * time.Millisecond,
		StockMin: 5, StockMax: 30, PerUserLimitMax: 2, QuantityMax: 2, CallTimeout: time.Second,
		MaxResends: 1, MaxCallsPerItem: 500, MaxCalls: 5000, ProbeInterval: 5 * time.Millisecond,
		RecoveryTimeout: time.Second, FinalTimeout: time.Second,
	}
}

func TestRunPassesACorrectStore(t *testing.T) {
	s := &fakeStore{}
	res, err := Run(context.Background(), fastConfig(3), s, s)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(s.injected) == 0 || len(res.Faults) != len(s.injected) || res.Report.Operations == 0 {
		t.Fatalf("injected %v\n%s", s.injected, res.Summary())
	}
	if res.Report.SoldOut == 0 || res.Report.LimitReached == 0 {
		t.Fatalf("the workload never reached a limit or sold out an item:\n%s", res.Summary())
	}
}

func TestRunCatchesASkippedUserLimit(t *testing.T) {
	s := &fakeStore{skipLimit: true}
	res, err := Run(context.Background(), fastConfig(3), s, s)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	for _, v := range res.Report.Violations {
		failed[v.Check] = true
	}
	if res.OK() || !failed[check.CheckUserLimit] || !failed[check.CheckLinearizable] {
		t.Fatalf("broken store not caught: %v\n%s", fmt.Sprint(failed), res.Summary())
	}
}
