package check

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// builder makes small histories by hand: one item "c/x" unless told.
type builder struct {
	h History
	f Final
}

func newBuilder(stock uint64, limit uint32) *builder {
	b := &builder{}
	b.h.Items = []ItemSpec{{Campaign: "c", Item: "x", Stock: stock, PerUserLimit: limit}}
	b.f = Final{
		Items:     []FinalItem{{Campaign: "c", Item: "x", Total: stock, Available: stock}},
		Nodes:     []NodeState{{ID: "n1", AppliedIndex: 9, Digest: "d"}, {ID: "n2", AppliedIndex: 9, Digest: "d"}},
		ReadStart: 1000, ReadEnd: 1010,
	}
	return b
}

func (b *builder) call(worker int, user, req string, start, end int64, out Outcome, id uint64) *builder {
	b.h.Calls = append(b.h.Calls, Call{Worker: worker, Campaign: "c", Item: "x", User: user, RequestID: req,
		Quantity: 1, Start: start, End: end, Outcome: out, ClaimID: id})
	return b
}

// holds puts a live claim in the final state and moves a unit of stock.
func (b *builder) holds(id uint64, user, req string) *builder {
	b.f.Claims = append(b.f.Claims, FinalClaim{ID: id, Campaign: "c", Item: "x", User: user, RequestID: req, Quantity: 1, State: ClaimReserved})
	it := &b.f.Items[0]
	it.Reserved++
	if it.Available > 0 {
		it.Available--
	} else {
		it.Total++ // a broken store's counters: more claimed than stock
	}
	return b
}

func (b *builder) check(t *testing.T) *Report {
	t.Helper()
	return Check(b.h, b.f, Options{})
}

func checksFailed(r *Report) []string {
	var out []string
	for _, v := range r.Violations {
		if !slices.Contains(out, v.Check) {
			out = append(out, v.Check)
		}
	}
	slices.Sort(out)
	return out
}

func wantChecks(t *testing.T, r *Report, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := checksFailed(r); !slices.Equal(got, want) {
		t.Fatalf("failed checks %v, want %v\n%s", got, want, r.Summary())
	}
}

func TestCleanHistoryPasses(t *testing.T) {
	r := newBuilder(2, 1).
		call(0, "a", "r1", 0, 10, Granted, 1).
		call(1, "b", "r2", 5, 15, Granted, 2).
		call(2, "a", "r3", 20, 30, LimitReached, 0).
		call(2, "c", "r4", 40, 50, SoldOut, 0).
		holds(1, "a", "r1").holds(2, "b", "r2").check(t)
	wantChecks(t, r)
	if r.Items[0].Verdict != VerdictOK || r.Items[0].Operations != 5 || r.LinearizableOps() != 5 {
		t.Fatalf("items %+v", r.Items)
	}
	if r.Granted != 2 || r.SoldOut != 1 || r.LimitReached != 1 {
		t.Fatalf("counts %+v", r)
	}
}

func TestOversellIsCaught(t *testing.T) {
	r := newBuilder(1, 1).
		call(0, "a", "r1", 0, 10, Granted, 1).
		call(1, "b", "r2", 20, 30, Granted, 2).
		holds(1, "a", "r1").holds(2, "b", "r2").check(t)
	wantChecks(t, r, CheckOversell, CheckCounters, CheckLinearizable)
}

func TestLostAckIsCaught(t *testing.T) {
	r := newBuilder(3, 1).
		call(0, "a", "r1", 0, 10, Granted, 1).
		call(1, "b", "r2", 20, 30, Granted, 2).
		holds(2, "b", "r2").check(t)
	wantChecks(t, r, CheckLostAck, CheckLinearizable)
}

func TestUserOverLimitIsCaught(t *testing.T) {
	r := newBuilder(5, 1).
		call(0, "a", "r1", 0, 10, Granted, 1).
		call(0, "a", "r2", 20, 30, Granted, 2).
		holds(1, "a", "r1").holds(2, "a", "r2").check(t)
	wantChecks(t, r, CheckUserLimit, CheckLinearizable)
}

// A sold-out answer before any grant, with stock granted later, breaks no
// counter: only the linearizability check sees it.
func TestStaleSoldOutIsOnlyNotLinearizable(t *testing.T) {
	r := newBuilder(1, 1).
		call(0, "a", "r1", 0, 10, SoldOut, 0).
		call(1, "b", "r2", 20, 30, Granted, 1).
		holds(1, "b", "r2").check(t)
	wantChecks(t, r, CheckLinearizable)
}

func TestPendingGrantMayLandBeforeASoldOut(t *testing.T) {
	// a's call never learnt its outcome; the final state shows it granted,
	// and b's sold out is explained by a landing before it.
	b := newBuilder(1, 1).
		call(0, "a", "r1", 0, 10, Unknown, 0).
		call(1, "b", "r2", 20, 30, SoldOut, 0).
		holds(1, "a", "r1")
	r := b.check(t)
	wantChecks(t, r)
	if r.UnknownApplied != 1 || r.Items[0].Pending != 1 {
		t.Fatalf("unknown applied %d, pending %d", r.UnknownApplied, r.Items[0].Pending)
	}
	// Called only after b was told sold out: nothing explains b.
	b.h.Calls[0].Start, b.h.Calls[0].End = 40, 50
	wantChecks(t, b.check(t), CheckLinearizable)
}

func TestUnknownWithoutEffectIsDropped(t *testing.T) {
	r := newBuilder(1, 1).
		call(0, "a", "r1", 0, 10, Unknown, 0).
		call(1, "b", "r2", 20, 30, Granted, 1).
		holds(1, "b", "r2").check(t)
	wantChecks(t, r)
	if r.UnknownAbsent != 1 || r.Items[0].Operations != 2 {
		t.Fatalf("unknown absent %d, operations %d", r.UnknownAbsent, r.Items[0].Operations)
	}
}

func TestResumedRequestIsOneOperation(t *testing.T) {
	r := newBuilder(1, 1).
		call(0, "a", "r1", 0, 10, Unknown, 0).
		call(0, "a", "r1", 20, 30, Granted, 1).
		call(1, "b", "r2", 40, 50, SoldOut, 0).
		holds(1, "a", "r1").check(t)
	wantChecks(t, r)
	if r.Calls != 3 || r.Operations != 2 {
		t.Fatalf("calls %d operations %d", r.Calls, r.Operations)
	}
}

func TestTwoAnswersToOneRequestAreCaught(t *testing.T) {
	r := newBuilder(1, 1).
		call(0, "a", "r1", 0, 10, Granted, 1).
		call(0, "a", "r1", 20, 30, SoldOut, 0).
		holds(1, "a", "r1").check(t)
	wantChecks(t, r, CheckAnswers)
}

func TestPhantomClaimsAreCaught(t *testing.T) {
	r := newBuilder(3, 1).
		call(0, "a", "r1", 0, 10, SoldOut, 0).
		holds(1, "a", "r1").holds(2, "z", "never-sent").check(t)
	wantChecks(t, r, CheckPhantom, CheckLinearizable)
}

func TestDivergentReplicasAreCaught(t *testing.T) {
	b := newBuilder(1, 1)
	b.f.Nodes[1].Digest = "other"
	wantChecks(t, b.check(t), CheckReplicas)
	b = newBuilder(1, 1)
	b.f.Nodes[1].Err = "unreachable"
	wantChecks(t, b.check(t), CheckReplicas)
}

func TestMissingFinalStateFails(t *testing.T) {
	b := newBuilder(1, 1).call(0, "a", "r1", 0, 10, Unknown, 0)
	b.f = Final{Err: "cluster did not recover"}
	r := b.check(t)
	wantChecks(t, r, CheckFinalState)
	// Without a final state the unknown claim stays pending and unresolved.
	if r.Items[0].Verdict != VerdictOK || r.Items[0].Operations != 1 {
		t.Fatalf("items %+v", r.Items)
	}
}

func TestArtifactsIncludeVisualisation(t *testing.T) {
	b := newBuilder(1, 1).
		call(0, "a", "r1", 0, 10, SoldOut, 0).
		call(1, "b", "r2", 20, 30, Granted, 1).
		holds(1, "b", "r2")
	r := b.check(t)
	dir := t.TempDir()
	files, err := WriteArtifacts(dir, b.h, b.f, r)
	if err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(dir, "linearizability-c_x.html")
	if !slices.Contains(files, html) {
		t.Fatalf("files %v", files)
	}
	data, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(data), `claim(b ×1) -\u003e granted #1`) {
		t.Fatalf("visualisation lacks the operations: %v", err)
	}
	summary, _ := os.ReadFile(filepath.Join(dir, "summary.txt"))
	if !strings.Contains(string(summary), "violations: 1") {
		t.Fatalf("summary:\n%s", summary)
	}
}
