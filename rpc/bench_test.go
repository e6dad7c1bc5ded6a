package rpc

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/raftnode"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// BenchmarkClaimBatchLoopback measures ClaimBatch end to end on a 3-node
// cluster over loopback TCP with fsync'd bbolt logs: one gRPC call, one log
// entry, a quorum write and apply per batch. Several batches are in flight
// at once (as from several front doors), so raft's group commit shows.
//
//	go test -run '^$' -bench ClaimBatchLoopback -benchtime 3s ./rpc/
func BenchmarkClaimBatchLoopback(b *testing.B) {
	for _, size := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) { benchClaimBatch(b, size) })
	}
}

// BenchmarkGroupCommit compares raft's group commit settings with 16-claim
// batches, 16 in flight: MaxAppendEntries entries share one fsync, and
// BatchApplyCh lets that many proposals queue for it.
//
//	go test -run '^$' -bench GroupCommit -benchtime 3s ./rpc/
func BenchmarkGroupCommit(b *testing.B) {
	for _, tune := range []struct {
		name string
		cfg  raftnode.Config
	}{
		{"mae=1", raftnode.Config{MaxAppendEntries: 1}},
		{"mae=64,nobatchch", raftnode.Config{MaxAppendEntries: 64, NoBatchApplyCh: true}},
		{"mae=64", raftnode.Config{MaxAppendEntries: 64}},
		{"mae=256", raftnode.Config{MaxAppendEntries: 256}},
		{"mae=1024", raftnode.Config{MaxAppendEntries: 1024}},
	} {
		b.Run(tune.name, func(b *testing.B) { runClaimLoad(b, startTunedCluster(b, 3, tune.cfg), 16, 16) })
	}
}

const benchInFlight = 8

func benchClaimBatch(b *testing.B, size int) {
	runClaimLoad(b, startLoopbackCluster(b, 3, false), size, benchInFlight)
}

func runClaimLoad(b *testing.B, c *loopbackCluster, size, inFlight int) {
	l := c.leader(b)
	openSale(b, pb.NewAdminClient(c.conns[l]), 1<<40, 1)
	store, err := client.NewStore(c.addrs())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var seq atomic.Int64
	b.SetParallelism((inFlight + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(p *testing.PB) {
		ctx := context.Background()
		for p.Next() {
			req := claimBatch(fmt.Sprintf("b%d", seq.Add(1)), size)
			res, err := store.ClaimBatch(ctx, req)
			if err != nil {
				b.Error(err)
				return
			}
			if res.Outcomes[0].Reason != pb.Reason_REASON_UNSPECIFIED {
				b.Errorf("claim refused: %v", res.Outcomes[0])
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N*size)/elapsed.Seconds(), "claims/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "batches/s")
}
