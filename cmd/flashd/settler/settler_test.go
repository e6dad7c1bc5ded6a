package settler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/raftnode"
	"github.com/flashd/flashd/rpc"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// orderService is a fake downstream order service that fails at random. It
// decides each order once, by its Idempotency-Key, and answers every retry
// with that decision: accepted (200, but sometimes 500 after recording it,
// an ambiguous failure) or refused for good (422). Before deciding it may
// fail transiently (503, or too slow for the caller's timeout) without
// recording anything. It counts calls that overlap for one key.
type orderService struct {
	mu       sync.Mutex
	rng      *rand.Rand
	decided  map[string]int // key → 200 or 422
	inFlight map[string]bool
	overlaps int
	calls    int
}

func (o *orderService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	o.mu.Lock()
	o.calls++
	if o.inFlight[key] {
		o.overlaps++
	}
	o.inFlight[key] = true
	roll := o.rng.Float64()
	code, known := o.decided[key]
	if !known {
		switch {
		case roll < 0.20:
			code = http.StatusServiceUnavailable
		case roll < 0.25:
			code = -1 // too slow
		case roll < 0.40:
			code = http.StatusUnprocessableEntity
			o.decided[key] = code
		case roll < 0.50:
			o.decided[key] = http.StatusOK
			code = http.StatusInternalServerError // recorded, but the answer is a failure
		default:
			code = http.StatusOK
			o.decided[key] = code
		}
	} else if roll < 0.2 {
		code = http.StatusBadGateway
	}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.inFlight, key)
		o.mu.Unlock()
	}()
	if code == -1 {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Second):
		}
		code = http.StatusGatewayTimeout
	}
	w.WriteHeader(code)
}

// callTracker sees every order call from the callers' side and counts a
// call about a claim while another worker's call about it is in flight.
type callTracker struct {
	mu       sync.Mutex
	holder   map[string]string // Idempotency-Key → the worker calling
	overlaps int
}

func (c *callTracker) transport(worker string) http.RoundTripper {
	base := &http.Transport{}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		key := r.Header.Get("Idempotency-Key")
		c.mu.Lock()
		if other, busy := c.holder[key]; busy && other != worker {
			c.overlaps++
		}
		c.holder[key] = worker
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.holder, key)
			c.mu.Unlock()
		}()
		return base.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// serve runs the service on addr until the returned stop is called.
func (o *orderService) serve(t *testing.T, addr string) (stop func()) {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the port may linger briefly after the last stop
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("order service: %v", err)
	}
	srv := &http.Server{Handler: o}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	return func() {
		_ = srv.Close() // drops open connections: a crash, to the callers
		<-done
	}
}

// cluster starts n store nodes in this process with every invariant checked
// after every apply, and returns their gRPC addresses and nodes.
func cluster(t *testing.T, n int) ([]string, []*raftnode.Node) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var addrs []string
	var nodes []*raftnode.Node
	for i := range n {
		grpcAddr, raftAddr := freeAddr(t), freeAddr(t)
		node, err := raftnode.Open(raftnode.Config{
			ID: fmt.Sprint("n", i+1), Region: fmt.Sprint("r", i+1), DataDir: t.TempDir(), RaftAddr: raftAddr, GRPCAddr: grpcAddr,
			Bootstrap: i == 0, Logger: quiet, RaftLog: io.Discard, FSM: fsm.Config{CheckInvariants: true},
			HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := rpc.ServeStore(node, grpcAddr, "", quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			srv.Stop()
			node.Close()
		})
		addrs, nodes = append(addrs, grpcAddr), append(nodes, node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !nodes[0].IsLeader() {
		if ctx.Err() != nil {
			t.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := storeClient(t, addrs[:1])
	for i, node := range nodes[1:] {
		if _, err := st.Join(ctx, &pb.JoinRequest{Id: node.ID(), RaftAddr: node.RaftAddr(), GrpcAddr: addrs[i+1], Region: fmt.Sprint("r", i+2)}); err != nil {
			t.Fatal(err)
		}
	}
	return addrs, nodes
}

func storeClient(t *testing.T, addrs []string) *client.Store {
	t.Helper()
	st, err := client.NewStore(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSettlementUnderFaults: claims settle through workers while the order
// service fails at random and is killed and restarted, and one worker is
// stopped mid-run and replaced. In the end every claim is settled or
// released, the stock counters agree with the claims, the settled claims
// are exactly those the order service accepted, and no order was ever being
// handled by two calls at once.
func TestSettlementUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	const claims = 200
	addrs, nodes := cluster(t, 3)
	st := storeClient(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: "spring", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Start: timestamppb.New(time.Now().Add(-time.Minute)),
	}})
	if err == nil {
		_, err = st.AddItem(ctx, &pb.AddItemRequest{CampaignId: "spring", ItemId: "lantern", Stock: claims + 50})
	}
	if err == nil {
		_, err = st.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: "spring", State: pb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()})
	}
	if err != nil {
		t.Fatal(err)
	}
	for b := range claims / 50 {
		req := &pb.ClaimBatchRequest{}
		for i := range 50 {
			req.Claims = append(req.Claims, &pb.ClaimRequest{CampaignId: "spring", ItemId: "lantern", UserId: fmt.Sprint("user-", b*50+i), Quantity: 1})
		}
		if _, err := st.ClaimBatch(ctx, req); err != nil {
			t.Fatal(err)
		}
	}

	calls := &callTracker{holder: map[string]string{}}
	orders := &orderService{rng: rand.New(rand.NewPCG(1, 2)), decided: map[string]int{}, inFlight: map[string]bool{}}
	orderAddr := freeAddr(t)
	stopOrders := orders.serve(t, orderAddr)
	start := func(name string) (*Worker, func()) {
		w, err := New(st, Config{
			Worker: name, OrderURL: "http://" + orderAddr + "/orders", Concurrency: 4,
			Lease: 2 * time.Second, OrderTimeout: 300 * time.Millisecond, PollInterval: 50 * time.Millisecond,
			HTTPClient: &http.Client{Transport: calls.transport(name)},
		})
		if err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := w.Run(wctx); err != nil {
				t.Errorf("worker %s: %v", name, err)
			}
		}()
		return w, func() { stop(); <-done }
	}
	a, stopA := start("a")
	b, stopB := start("b")
	defer stopB()

	item := func() *pb.Item {
		resp, err := st.GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Item
	}
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s; item %v", what, item())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("a quarter settled or released", func() bool { return item().Reserved <= claims*3/4 })
	stopOrders() // the order service dies ...
	time.Sleep(time.Second)
	stopOrders = orders.serve(t, orderAddr) // ... and comes back
	defer func() { stopOrders() }()
	waitUntil("half settled or released", func() bool { return item().Reserved <= claims/2 })
	stopA() // a worker dies; its leases end, and a replacement takes over
	c, stopC := start("c")
	defer stopC()
	waitUntil("every claim settled or released", func() bool { return item().Reserved == 0 })

	orders.mu.Lock()
	defer orders.mu.Unlock()
	var settled, released uint64
	for id := uint64(1); id <= claims; id++ {
		claim, ok := nodes[0].FSM().Claim(id)
		if !ok {
			t.Fatalf("claim %d missing", id)
		}
		decision := orders.decided[fmt.Sprint(id)]
		switch {
		case claim.State == fsm.ClaimSettled && decision == http.StatusOK:
			settled++
		case claim.State == fsm.ClaimReleased && decision == http.StatusUnprocessableEntity:
			released++
		default:
			t.Errorf("claim %d is %v; the order service decided %d", id, claim.State, decision)
		}
	}
	it := item()
	if it.Sold != settled || it.Available != it.Total-settled || it.Reserved != 0 {
		t.Errorf("item %v; %d claims settled", it, settled)
	}
	calls.mu.Lock()
	if calls.overlaps != 0 {
		t.Errorf("%d times a worker called about a claim another worker was calling about", calls.overlaps)
	}
	calls.mu.Unlock()
	if err := nodes[0].FSM().CheckInvariants(); err != nil {
		t.Error(err)
	}
	// The cursor moves on the next lease: past every claim.
	if _, err := st.LeaseClaims(ctx, &pb.LeaseClaimsRequest{Group: DefaultGroup, Worker: "last", Max: 1, Lease: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	waitUntil("the last lease to apply on node 1", func() bool { return nodes[0].FSM().SettlementFeeds()[0].Cursor == claims+1 })
	feeds := nodes[0].FSM().SettlementFeeds()
	if len(feeds) != 1 || feeds[0].Cursor != claims+1 {
		t.Errorf("feeds %v: want the cursor past every claim", feeds)
	}
	var total Stats
	for _, w := range []*Worker{a, b, c} {
		s := w.Stats()
		total.Settled, total.Released, total.Retries, total.Dropped, total.Conflicts =
			total.Settled+s.Settled, total.Released+s.Released, total.Retries+s.Retries, total.Dropped+s.Dropped, total.Conflicts+s.Conflicts
	}
	t.Logf("%d settled, %d released; %d order calls (%d overlapping at the service, from calls their caller abandoned); workers: %+v",
		settled, released, orders.calls, orders.overlaps, total)
	if total.Conflicts != 0 || total.Retries == 0 || released == 0 {
		t.Errorf("worker stats %+v: want retries, releases and no conflict", total)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{OrderURL: "http://x"}, {Worker: "w"},
		{Worker: "w", OrderURL: "http://x", Concurrency: -1},
		{Worker: "w", OrderURL: "http://x", Lease: time.Millisecond},
		{Worker: "w", OrderURL: "http://x", Lease: 5 * time.Second, OrderTimeout: 2 * time.Second},
	} {
		if _, err := New(nil, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(nil, Config{Worker: "w", OrderURL: "http://x"}); err != nil {
		t.Error(err)
	}
}
