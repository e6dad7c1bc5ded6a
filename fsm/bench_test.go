package fsm

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

const benchBatchLen = 256

// claimLog is the source of benchmark log entries: batches of
// benchBatchLen claims, each from a new user, on one item of an open sale.
type claimLog struct {
	index  uint64
	claims int
	now    int64
}

// newBenchFSM returns a production-configured FSM (no invariant checks)
// with an open sale whose item has stock for any benchmark, and its log.
func newBenchFSM(tb testing.TB) (*FSM, *claimLog) {
	tb.Helper()
	f, err := New(Config{})
	if err != nil {
		tb.Fatal(err)
	}
	l := &claimLog{now: t0}
	for _, cmd := range []*fsmpb.Command{
		createCampaign(&fsmpb.CreateCampaign{
			CampaignId: "singles-day", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0,
			PerUserLimit: 1, ReservationTtlNanos: int64(15 * time.Minute),
		}),
		openCampaign("singles-day"),
		addItem("singles-day", "phone", 1<<62, 0),
	} {
		if out := f.Apply(l.entry(tb, cmd)).(*Result).Outcomes[0]; out.Reason != ReasonOK {
			tb.Fatalf("setup: %v", out.Reason)
		}
	}
	return f, l
}

func (l *claimLog) entry(tb testing.TB, cmd *fsmpb.Command) *raft.Log {
	cmd.TimeUnixNano = l.now
	data, err := EncodeCommand(cmd)
	if err != nil {
		tb.Fatal(err)
	}
	l.index++
	return &raft.Log{Index: l.index, Type: raft.LogCommand, Data: data}
}

// next returns n entries of one claim batch each, 1 ms apart.
func (l *claimLog) next(tb testing.TB, n int) []*raft.Log {
	logs := make([]*raft.Log, n)
	for i := range logs {
		batch := make([]*fsmpb.ClaimRequest, benchBatchLen)
		for j := range batch {
			l.claims++
			batch[j] = &fsmpb.ClaimRequest{
				RequestId: fmt.Sprintf("req-%09d", l.claims), CampaignId: "singles-day", ItemId: "phone",
				UserId: fmt.Sprintf("user-%09d", l.claims), Quantity: 1,
			}
		}
		l.now += int64(time.Millisecond)
		logs[i] = l.entry(tb, claimBatch(batch...))
	}
	return logs
}

// apply applies entries one per ApplyBatch call, as raft does when each
// batch arrives alone, and checks the first claim of each was granted.
func apply(tb testing.TB, f *FSM, logs []*raft.Log) {
	for _, l := range logs {
		if out := f.ApplyBatch([]*raft.Log{l})[0].(*Result).Outcomes[0]; out.Reason != ReasonOK {
			tb.Fatalf("claim refused: %v (%s)", out.Reason, out.Message)
		}
	}
}

// BenchmarkApplyClaimBatch measures applying batches of 256 claims. Entries
// are encoded ahead, 64 at a time, with the timer stopped. The state grows
// as it runs; past 1,000,000 claims every claim also evicts the oldest
// idempotency record.
func BenchmarkApplyClaimBatch(b *testing.B) {
	f, log := newBenchFSM(b)
	b.ReportAllocs()
	b.ResetTimer()
	var pending []*raft.Log
	var user, system int64 // CPU time spent applying, all threads (GC included)
	for range b.N {
		if len(pending) == 0 {
			b.StopTimer()
			pending = log.next(b, 64)
			b.StartTimer()
		}
		u0, s0 := cpuTimes()
		apply(b, f, pending[:1])
		u1, s1 := cpuTimes()
		user, system = user+u1-u0, system+s1-s0
		pending = pending[1:]
	}
	claims := float64(b.N * benchBatchLen)
	b.ReportMetric(claims/b.Elapsed().Seconds(), "claims/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/claims, "ns/claim")
	b.ReportMetric(float64(user)/claims, "user-ns/claim")
	b.ReportMetric(float64(system)/claims, "sys-ns/claim")
}

// BenchmarkMillionClaims applies 1,000,000 claims and reports the heap they
// take (claim records, the per-user index and the idempotency records), and
// how long a snapshot of them takes to persist and to restore.
func BenchmarkMillionClaims(b *testing.B) {
	if testing.Short() {
		b.Skip("applies a million claims")
	}
	const claims = 1_000_000
	for b.Loop() {
		before := heapInUse()
		f, log := newBenchFSM(b)
		for log.claims < claims {
			apply(b, f, log.next(b, min(64, (claims-log.claims)/benchBatchLen+1)))
		}
		after := heapInUse()
		n := f.Stats().Claims
		b.ReportMetric(float64(after-before)/float64(n), "heap-B/claim")

		var sink bufferSink
		sink.Grow(200 * n) // so the timing is the snapshot's, not the buffer's growth
		start := time.Now()
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(&sink); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "persist-s")
		b.ReportMetric(float64(sink.Len())/float64(n), "snapshot-B/claim")

		start = time.Now()
		g, _ := New(Config{})
		if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "restore-s")
		if g.Stats() != f.Stats() {
			b.Fatalf("restored %+v, want %+v", g.Stats(), f.Stats())
		}
		runtime.KeepAlive(f)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkDecodeClaimBatch compares proto.Unmarshal of a 256-claim entry
// with the claim decoder the state machine uses (see decode.go).
func BenchmarkDecodeClaimBatch(b *testing.B) {
	_, log := newBenchFSM(b)
	data := log.next(b, 1)[0].Data
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var cmd fsmpb.Command
			if err := proto.Unmarshal(data, &cmd); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatchLen), "ns/claim")
	})
	b.Run("decodeClaims", func(b *testing.B) {
		b.ReportAllocs()
		var scratch []claimRequest
		for b.Loop() {
			e, err := decodeCommand(data)
			if err != nil {
				b.Fatal(err)
			}
			if scratch, err = decodeClaims(e.claimBodies, scratch[:0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatchLen), "ns/claim")
	})
}
