package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// BenchmarkRestartWithMillionClaims measures how long a store node holding
// 1,000,000 claims takes to come back after kill -9: from process start to
// answering with every acknowledged claim applied. Run it alone:
//
//	go test -run '^$' -bench RestartWithMillionClaims -benchtime 1x ./cmd/flashd/
//
// Restart time must not grow with total history: the node restores its
// latest snapshot and replays only the log tail after it.
func BenchmarkRestartWithMillionClaims(b *testing.B) {
	c := startBinCluster(b)
	const claims = 1_000_000
	c.mustCtl("campaign", "create", "spring", "--kind", "flash-sale", "--start", "now", "--per-user-limit", "1")
	c.mustCtl("item", "add", "--campaign", "spring", "lantern", "--stock", fmt.Sprint(claims))
	c.mustCtl("campaign", "open", "spring")
	s, err := client.NewStore(c.grpc)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	loadStart := time.Now()
	fillClaims(b, ctx, s, claims)
	b.Logf("loaded %d claims at %.0f claims/s", claims, float64(claims)/time.Since(loadStart).Seconds())

	leader := c.leaderIndex(ctx, s)
	victim := (leader + 1) % len(c.nodes)
	snap, err := c.ctl("--endpoints", c.grpc[victim], "cluster", "snapshot")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("snapshot on n%d: %s", victim+1, snap)
	st, err := s.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		b.Fatal(err)
	}
	target := uint64(0)
	for _, m := range st.Members {
		if m.Status != nil && m.Status.CommitIndex > target {
			target = m.Status.CommitIndex
		}
	}
	c.nodes[victim].cmd.Process.Kill()
	c.nodes[victim].wait()

	b.ResetTimer()
	start := time.Now()
	c.start(c.nodes[victim])
	only, err := client.NewStore([]string{c.grpc[victim]})
	if err != nil {
		b.Fatal(err)
	}
	defer only.Close()
	for {
		ns, err := only.NodeStatus(ctx, c.grpc[victim], &pb.NodeStatusRequest{})
		if err == nil && ns.AppliedIndex >= target && ns.Claims == claims {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("node did not recover: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportMetric(time.Since(start).Seconds(), "restart-s")
}

// fillClaims grants n claims from n distinct users in batches of 1024.
func fillClaims(b *testing.B, ctx context.Context, s *client.Store, n int) {
	const batch, workers = 1024, 4
	var wg sync.WaitGroup
	next := make(chan int)
	go func() {
		defer close(next)
		for i := 0; i < n; i += batch {
			next <- i
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range next {
				req := &pb.ClaimBatchRequest{}
				for u := first; u < first+batch && u < n; u++ {
					user := fmt.Sprintf("user-%07d", u)
					req.Claims = append(req.Claims, &pb.ClaimRequest{RequestId: "r-" + user, CampaignId: "spring", ItemId: "lantern", UserId: user, Quantity: 1})
				}
				if _, err := s.ClaimBatch(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
