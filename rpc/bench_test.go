package rpc

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashd/flashd/client"
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

const benchInFlight = 8

func benchClaimBatch(b *testing.B, size int) {
	c := startLoopbackCluster(b, 3, false)
	l := c.leader(b)
	openSale(b, pb.NewAdminClient(c.conns[l]), 1<<40, 1)
	store, err := client.NewStore(c.addrs())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var seq atomic.Int64
	b.SetParallelism((benchInFlight + 1) / 2) // x GOMAXPROCS (2 here) goroutines
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
