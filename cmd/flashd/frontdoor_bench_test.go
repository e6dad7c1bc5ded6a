package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/frontdoor"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Benchmarks on the real binaries: three store nodes and one front door,
// driven from this process over loopback gRPC (so the load generator
// shares the machine's cores with them). Run with a fixed count, e.g.
//
//	go test -run '^$' -bench FrontDoor -benchtime 20000x ./cmd/flashd/

// benchClaimers is how many claims the load generator keeps in flight.
const benchClaimers = 512

// BenchmarkFrontDoorCoalescing measures claims per second through one
// front door to a 3-node store, every claim granted (distinct users, stock
// to spare), with coalescing on (the defaults) and off (one claim per
// store request, as many requests in flight as the "on" case has claims).
func BenchmarkFrontDoorCoalescing(b *testing.B) {
	for _, bc := range []struct {
		name  string
		flags []string
	}{
		{"on", nil},
		{"off", []string{"--batch-max", "1", "--batch-window", "0", "--batches-in-flight", "1024", "--queue-max", "4096"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := startBinCluster(b)
			openSale(c, "bench", "gift", 1_000_000_000)
			f := c.startFrontDoor(b, "f1", bc.flags...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			batches, storeCPU := c.storeBatches(b), c.storeCPU(b)
			var next, failed atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range benchClaimers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						k := next.Add(1) - 1
						if k >= int64(b.N) || ctx.Err() != nil {
							return
						}
						user := fmt.Sprintf("%s-%d", bc.name, k)
						callCtx := metadata.AppendToOutgoingContext(ctx, "x-user-id", user)
						if _, err := f.fd.Claim(callCtx, &pb.FrontDoorClaimRequest{CampaignId: "bench", ItemId: "gift", Quantity: 1}); err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d claims failed", n, b.N)
			}
			b.ReportMetric(float64(b.N)/took.Seconds(), "claims/s")
			b.ReportMetric(float64(b.N)/(c.storeBatches(b)-batches), "claims/batch")
			b.ReportMetric(float64(b.N)/(c.storeCPU(b)-storeCPU), "claims/store-cpu-s")
		})
	}
}

// BenchmarkFrontDoorSoldOutRejections measures how many claims one front
// door turns away after a sell-out, with zero store traffic, and what that
// costs it in CPU: rejections per CPU-second of the front-door process is
// the per-core figure.
func BenchmarkFrontDoorSoldOutRejections(b *testing.B) {
	c := startBinCluster(b)
	openSale(c, "bench", "gift", 1)
	f := c.startFrontDoor(b, "f1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	claim := func(user string) error {
		_, err := f.fd.Claim(metadata.AppendToOutgoingContext(ctx, "x-user-id", user), &pb.FrontDoorClaimRequest{CampaignId: "bench", ItemId: "gift", Quantity: 1})
		return err
	}
	if err := claim("first"); err != nil {
		b.Fatal(err)
	}
	waitSoldOut(b, ctx, "bench", "gift", f)
	batches := c.storeBatches(b)
	cpu := func() float64 { return metric(scrape(b, f.httpAddr), "process_cpu_seconds_total") }
	cpuBefore := cpu()
	var next, wrong atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := next.Add(1) - 1; k < int64(b.N) && ctx.Err() == nil; k = next.Add(1) - 1 {
				if reasonOf(claim(fmt.Sprint("u", k))) != "SOLD_OUT" {
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	if n := wrong.Load(); n > 0 {
		b.Fatalf("%d answers were not SOLD_OUT", n)
	}
	if after := c.storeBatches(b); after != batches {
		b.Fatalf("the store received %v batches after the sell-out", after-batches)
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "rejections/s")
	if spent := cpu() - cpuBefore; spent > 0 {
		b.ReportMetric(float64(b.N)/spent, "rejections/door-cpu-s")
	}
}

// BenchmarkFrontDoorToStore is the coalescer's own figure: claims per
// second from one front door (in this process, called directly, so no
// ingress gRPC hides the difference) to the real 3-node store, coalescing
// on (defaults) and off (one claim per store request, as many in flight as
// "on" may have claims). Every claim is granted.
func BenchmarkFrontDoorToStore(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  frontdoor.Config
	}{
		{"on", frontdoor.Config{BatchMax: frontdoor.DefaultBatchMax, BatchWindow: frontdoor.DefaultBatchWindow, BatchesInFlight: frontdoor.DefaultBatchesInFlight}},
		{"off", frontdoor.Config{BatchMax: 1, BatchesInFlight: 1024, QueueMax: 4096}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := startBinCluster(b)
			openSale(c, "bench", "gift", 1_000_000_000)
			sc, err := client.NewStore(c.grpc)
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			cfg := bc.cfg
			cfg.ID, cfg.AuthMode = "bench", frontdoor.AuthInsecureHeader
			door, err := frontdoor.New(cfg, frontdoor.NewStoreClient(sc), prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			door.Start()
			defer door.Close()
			<-door.Ready()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			batches, storeCPU := c.storeBatches(b), c.storeCPU(b)
			var next, failed atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range 1024 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := next.Add(1) - 1; k < int64(b.N) && ctx.Err() == nil; k = next.Add(1) - 1 {
						callCtx := metadata.NewIncomingContext(ctx, metadata.Pairs("x-user-id", fmt.Sprintf("%s-%d", bc.name, k)))
						if _, err := door.Claim(callCtx, &pb.FrontDoorClaimRequest{CampaignId: "bench", ItemId: "gift", Quantity: 1}); err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d claims failed", n, b.N)
			}
			b.ReportMetric(float64(b.N)/took.Seconds(), "claims/s")
			b.ReportMetric(float64(b.N)/(c.storeBatches(b)-batches), "claims/batch")
			b.ReportMetric(float64(b.N)/(c.storeCPU(b)-storeCPU), "claims/store-cpu-s")
		})
	}
}

// storeCPU sums the CPU seconds the live store processes have used.
func (c *binCluster) storeCPU(t testing.TB) float64 {
	sum := 0.0
	for i := range c.nodes {
		if c.nodes[i].cmd.ProcessState == nil {
			sum += metric(scrape(t, c.storeHTTP(i)), "process_cpu_seconds_total")
		}
	}
	return sum
}
