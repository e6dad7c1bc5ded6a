package settler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	return serveHandler(t, addr, o)
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
		srv, err := rpc.ServeStore(node, grpcAddr, "", rpc.DefaultLimits(), quiet)
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

const storeAttemptsMax = 1000

// testDeadline bounds a whole test: generous, so that a loaded machine
// slows a test down without failing it (at load 25 one took two minutes).
const testDeadline = 5 * time.Minute

// caughtUp waits until node has applied every entry any node had applied
// when called, so that its state shows every write acknowledged before (a
// follower may lag the leader that answered).
func caughtUp(ctx context.Context, t *testing.T, nodes []*raftnode.Node, node *raftnode.Node) {
	t.Helper()
	var index uint64
	for _, n := range nodes {
		index = max(index, n.FSM().AppliedIndex())
	}
	for node.FSM().AppliedIndex() < index {
		if ctx.Err() != nil {
			t.Fatalf("node %s applied %d, not %d", node.ID(), node.FSM().AppliedIndex(), index)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storeClient is the tests' and the workers' store client. It retries
// until the caller's deadline, not the default 10 attempts: on a loaded
// machine (two copies of these tests under -race at load 25) an election
// can outlast those, and a test's setup call then failed "gave up after 10
// attempts: not the leader". Every call it makes carries a request ID, so
// a retry is answered as the first attempt was.
func storeClient(t *testing.T, addrs []string) *client.Store {
	t.Helper()
	st, err := client.NewStore(addrs, client.WithMaxAttempts(storeAttemptsMax))
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
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
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
			Worker: name, Campaigns: []string{"spring"}, OrderURL: "http://" + orderAddr + "/orders", Concurrency: 4,
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
	caughtUp(ctx, t, nodes, nodes[0])

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
	c := []string{"spring"}
	for _, cfg := range []Config{
		{OrderURL: "http://x", Campaigns: c}, {Worker: "w", Campaigns: c},
		{Worker: "w", OrderURL: "http://x"}, // no campaign
		{Worker: "w", OrderURL: "http://x", Campaigns: []string{"spring", ""}},
		{Worker: "w", OrderURL: "http://x", Campaigns: make([]string, campaignsMax+1)},
		{Worker: "w", OrderURL: "http://x", Campaigns: c, Concurrency: -1},
		{Worker: "w", OrderURL: "http://x", Campaigns: c, Lease: time.Millisecond},
		{Worker: "w", OrderURL: "http://x", Campaigns: c, Lease: 5 * time.Second, OrderTimeout: 2 * time.Second},
	} {
		if _, err := New(nil, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(nil, Config{Worker: "w", OrderURL: "http://x", Campaigns: c}); err != nil {
		t.Error(err)
	}
}

// slowOrders is a fake order service slower than the claims' reservations:
// it answers after up to maxDelay, fails a share of first calls with 503
// (recording nothing), refuses a share for good (422) and accepts the rest,
// deciding each Idempotency-Key once and only when it answers. POST
// .../cancel cancels an accepted order: the first cancel of a key takes
// effect, a repeat answers 200 again and changes nothing; a share of
// cancels fail with 503 before or 500 after taking effect. A cancel of a
// key never decided answers 404 and refuses the key from then on.
type slowOrders struct {
	callCounter // and the lock of what follows
	rng         *rand.Rand
	maxDelay    time.Duration
	decided     map[string]int       // key → 200 or 422
	acceptedAt  map[string]time.Time // key → when it was accepted
	cancelled   map[string]int       // key → cancels that took effect
	cancelOK    int                  // 2xx answers to cancels
	noOrder     int                  // 404 answers to cancels
	strayed     []string             // cancels of orders refused (422)
}

// checkStockSettled checks, at the end of a run, that the item's counters
// say exactly settled units sold and nothing still reserved, and that the
// state machine's invariants hold.
func checkStockSettled(ctx context.Context, t *testing.T, st *client.Store, node *raftnode.Node, settled uint64) {
	t.Helper()
	it, err := st.GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern"})
	if err != nil {
		t.Fatal(err)
	}
	if i := it.Item; i.Sold != settled || i.Available != i.Total-settled || i.Reserved != 0 {
		t.Errorf("item %v; %d claims settled", i, settled)
	}
	if err := node.FSM().CheckInvariants(); err != nil {
		t.Error(err)
	}
}

// callCounter counts a fake order service's calls, under the lock of the
// service that embeds it, so that a test can wait for it to go quiet.
type callCounter struct {
	mu       sync.Mutex
	calls    int
	inFlight int
	lastEnd  time.Time
}

// idleFor reports whether no call has been in flight for d.
func (c *callCounter) idleFor(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight == 0 && time.Since(c.lastEnd) > d
}

func (o *slowOrders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	o.mu.Lock()
	o.calls++
	o.inFlight++
	delay := time.Duration(o.rng.Int64N(int64(o.maxDelay)))
	roll := o.rng.Float64()
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.inFlight--
		o.lastEnd = time.Now()
		o.mu.Unlock()
	}()
	select {
	case <-r.Context().Done():
		return // the caller gave up: nothing recorded
	case <-time.After(delay):
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/cancel") {
		switch code, known := o.decided[key]; {
		case !known:
			o.decided[key] = http.StatusUnprocessableEntity // never to be created now
			o.noOrder++
			w.WriteHeader(http.StatusNotFound)
		case code != http.StatusOK:
			o.strayed = append(o.strayed, key)
			w.WriteHeader(http.StatusNotFound)
		case roll < 0.2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case roll < 0.3:
			o.cancelled[key]++
			w.WriteHeader(http.StatusInternalServerError) // took effect, but the answer is a failure
		default:
			if o.cancelled[key] == 0 {
				o.cancelled[key]++
			}
			o.cancelOK++
			w.WriteHeader(http.StatusOK)
		}
		if o.cancelled[key] > 1 {
			o.cancelled[key] = 1 // idempotent: a repeat changes nothing
		}
		return
	}
	code, known := o.decided[key]
	if !known {
		switch {
		case roll < 0.25:
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case roll < 0.35:
			code = http.StatusUnprocessableEntity
		default:
			code = http.StatusOK
			o.acceptedAt[key] = time.Now()
		}
		o.decided[key] = code
	}
	w.WriteHeader(code)
}

// TestOrdersPlacedPastTheDeadline: claims arrive in a stream, with a
// reservation TTL shorter than the order service takes to get through them,
// so many reservations expire while their order is being placed. A worker
// marks each claim as ordering before calling, so such a reservation keeps
// its stock and its order is honoured: in the end every order the service
// accepted is matched by a settled claim (some accepted after their
// reservation's deadline) or, if its lease ended first, cancelled (once,
// and counted by the worker that did it), no refused order was cancelled,
// every refused order's claim is released, and the stock counters agree
// with the claims.
func TestOrdersPlacedPastTheDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	const batches, perBatch = 10, 20
	const claims = batches * perBatch
	addrs, nodes := cluster(t, 3)
	st := storeClient(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: "spring", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Start: timestamppb.New(time.Now().Add(-time.Minute)),
		ReservationTtl: durationpb.New(1500 * time.Millisecond),
	}})
	if err == nil {
		_, err = st.AddItem(ctx, &pb.AddItemRequest{CampaignId: "spring", ItemId: "lantern", Stock: claims})
	}
	if err == nil {
		_, err = st.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{CampaignId: "spring", State: pb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()})
	}
	if err != nil {
		t.Fatal(err)
	}

	orders := &slowOrders{rng: rand.New(rand.NewPCG(3, 4)), maxDelay: 200 * time.Millisecond,
		decided: map[string]int{}, acceptedAt: map[string]time.Time{}, cancelled: map[string]int{}}
	orderAddr := freeAddr(t)
	stopOrders := serveHandler(t, orderAddr, orders)
	defer stopOrders()
	var workers []*Worker
	var stops []func()
	for _, name := range []string{"a", "b"} {
		reg := prometheus.NewRegistry()
		w, err := New(st, Config{
			Worker: name, Campaigns: []string{"spring"}, OrderURL: "http://" + orderAddr + "/orders", Concurrency: 3,
			Lease: 2500 * time.Millisecond, OrderTimeout: 500 * time.Millisecond, PollInterval: 50 * time.Millisecond,
			Metrics: reg,
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
		workers, stops = append(workers, w), append(stops, func() { stop(); <-done })
		if name == "a" {
			defer func() { checkMetrics(t, reg, w.Stats()) }()
		}
	}
	stopWorkers := func() {
		for _, stop := range stops {
			stop()
		}
		stops = nil
	}
	defer stopWorkers()

	for b := range batches {
		req := &pb.ClaimBatchRequest{}
		for i := range perBatch {
			req.Claims = append(req.Claims, &pb.ClaimRequest{CampaignId: "spring", ItemId: "lantern", UserId: fmt.Sprint("user-", b*perBatch+i), Quantity: 1})
		}
		if _, err := st.ClaimBatch(ctx, req); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for {
		resp, err := st.GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern"})
		if err != nil {
			t.Fatal(err)
		}
		// Every claim is settled or released; wait until no call could
		// still be coming (the longest backoff and one call), so that the
		// service's counts are final.
		if resp.Item.Reserved == 0 && orders.idleFor(backoffMax+500*time.Millisecond) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWorkers()
	caughtUp(ctx, t, nodes, nodes[0])

	orders.mu.Lock()
	defer orders.mu.Unlock()
	var settled, pastDeadline, cancelled, expired uint64
	for id := uint64(1); id <= claims; id++ {
		claim, ok := nodes[0].FSM().Claim(id)
		if !ok {
			t.Fatalf("claim %d missing", id)
		}
		key := fmt.Sprint(id)
		decision, n := orders.decided[key], orders.cancelled[key]
		switch {
		case claim.State == fsm.ClaimSettled && decision == http.StatusOK && n == 0:
			settled++
			if orders.acceptedAt[key].After(claim.Deadline) {
				pastDeadline++ // without the ordering mark: released at the deadline, the order cancelled
			}
		case claim.State == fsm.ClaimReleased && decision == http.StatusOK && n == 1:
			cancelled++
		case claim.State == fsm.ClaimReleased && decision != http.StatusOK && n == 0:
			expired++ // refused, or expired before any order was placed
		default:
			t.Errorf("claim %d is %v; the order service decided %d and cancelled it %d times", id, claim.State, decision, n)
		}
	}
	if len(orders.strayed) > 0 {
		t.Errorf("cancels of refused orders: %v", orders.strayed)
	}
	var total Stats
	for _, w := range workers {
		s := w.Stats()
		total.Settled += s.Settled
		total.Released += s.Released
		total.Cancelled += s.Cancelled
		total.NoOrder += s.NoOrder
		total.CancelFailed += s.CancelFailed
		total.Conflicts += s.Conflicts
		total.Retries += s.Retries
	}
	if total.Cancelled != int64(orders.cancelOK) || total.NoOrder != int64(orders.noOrder) || total.CancelFailed != 0 {
		t.Errorf("workers counted %d cancels, %d without an order and %d failed; the service answered %d cancels with 2xx and %d with 404",
			total.Cancelled, total.NoOrder, total.CancelFailed, orders.cancelOK, orders.noOrder)
	}
	if pastDeadline == 0 {
		t.Errorf("%d settled, none accepted past its deadline: the test wants reservations expiring under slow orders", settled)
	}
	// Without the ordering mark, an order accepted after the leader's
	// Expire released its claim is a conflict, and cancelled.
	if total.Conflicts != 0 {
		t.Errorf("%d orders accepted for claims released or being cancelled under them", total.Conflicts)
	}
	checkStockSettled(ctx, t, st, nodes[0], settled)
	t.Logf("%d settled (%d accepted past the deadline), %d orders cancelled, %d released (refused or expired unordered); %d order calls; workers %+v",
		settled, pastDeadline, cancelled, expired, orders.calls, total)
}

// checkMetrics compares a worker's Prometheus counters with its Stats.
func checkMetrics(t *testing.T, reg *prometheus.Registry, s Stats) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetCounter().GetValue()
		}
	}
	for name, want := range map[string]int64{
		"flashd_settler_claims_total/settled":     s.Settled,
		"flashd_settler_claims_total/conflict":    s.Conflicts,
		"flashd_settler_claims_total/expired":     s.Expired,
		"flashd_settler_claims_total/compensated": s.Compensated,
		"flashd_settler_cancels_total/cancelled":  s.Cancelled,
		"flashd_settler_cancels_total/no_order":   s.NoOrder,
		"flashd_settler_cancels_total/failed":     s.CancelFailed,
		"flashd_settler_retries_total":            s.Retries,
	} {
		if v, ok := got[name]; !ok || v != float64(want) {
			t.Errorf("metric %s = %v (present %v), want %d", name, v, ok, want)
		}
	}
}

// serveHandler serves h on addr until the returned stop is called, which
// drops open connections: a crash, to the callers.
func serveHandler(t *testing.T, addr string, h http.Handler) (stop func()) {
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
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	return func() {
		_ = srv.Close()
		<-done
	}
}
