package settler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/fsm"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// lossyOrders is a fake order service whose answers are often lost after
// it recorded the order: it decides each Idempotency-Key once (503 first,
// recording nothing; 422, refused; or accepted), then answers an accepted
// order's calls with 200, 500, or nothing until the caller times out. POST
// .../cancel cancels an accepted order (idempotent; sometimes 503), and
// answers 404 for a key never decided, refusing it from then on. It notes
// any order call that comes after a cancel of its key: the settlers must
// never make one.
type lossyOrders struct {
	callCounter // and the lock of what follows
	rng         *rand.Rand
	decided     map[string]int  // key → 200 or 422
	cancelled   map[string]bool // accepted orders cancelled
	tombstones  map[string]bool // keys cancelled before any decision
	lateCreates []string        // order calls after a cancel of their key
	lost        int             // answers of accepted orders lost (timeouts, 500s)
	cancelOK    int             // 2xx answers to cancels
	noOrder     int             // 404 answers to cancels
}

func (o *lossyOrders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	// Read the body to its end: only then does the server watch the
	// connection, and cancel r's context when the caller gives up.
	_, _ = io.Copy(io.Discard, r.Body)
	o.mu.Lock()
	o.calls++
	o.inFlight++
	delay := time.Duration(o.rng.Int64N(int64(100 * time.Millisecond)))
	roll, lose := o.rng.Float64(), o.rng.Float64()
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.inFlight--
		o.lastEnd = time.Now()
		o.mu.Unlock()
	}()
	select {
	case <-r.Context().Done():
		return // the caller gave up (or died): nothing recorded
	case <-time.After(delay):
	}
	o.mu.Lock()
	if strings.HasSuffix(r.URL.Path, "/cancel") {
		defer o.mu.Unlock()
		code, known := o.decided[key]
		switch {
		case roll < 0.2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case !known:
			o.tombstones[key] = true
			o.noOrder++
			w.WriteHeader(http.StatusNotFound)
		case code != http.StatusOK:
			o.noOrder++
			w.WriteHeader(http.StatusNotFound)
		default:
			o.cancelled[key] = true
			o.cancelOK++
			w.WriteHeader(http.StatusOK)
		}
		return
	}
	if o.tombstones[key] || o.cancelled[key] {
		o.lateCreates = append(o.lateCreates, key)
		o.mu.Unlock()
		w.WriteHeader(http.StatusConflict)
		return
	}
	code, known := o.decided[key]
	if !known {
		switch {
		case roll < 0.15:
			o.mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case roll < 0.3:
			code = http.StatusUnprocessableEntity
		default:
			code = http.StatusOK
		}
		o.decided[key] = code
	}
	if code == http.StatusOK && lose < 0.45 {
		o.lost++ // recorded, but the caller will not hear it
	}
	o.mu.Unlock()
	switch {
	case code == http.StatusOK && lose < 0.3:
		select { // no answer until the caller times out
		case <-r.Context().Done():
		case <-time.After(lostAnswerMax):
		}
		return
	case code == http.StatusOK && lose < 0.45:
		code = http.StatusInternalServerError
	}
	w.WriteHeader(code)
}

// lostAnswerMax bounds how long lossyOrders keeps a call whose answer it
// loses: far above the callers' order timeout.
const lostAnswerMax = 5 * time.Second

// errKilled is what a killed worker's calls get.
var errKilled = errors.New("worker killed")

// killSwitch stands for a worker's process: once killed, the worker's
// calls in flight are cut off and new ones fail at once, as with kill -9
// (its goroutines live on, doing nothing, until the test stops them).
type killSwitch struct {
	ctx  context.Context
	kill context.CancelFunc
}

func newKillSwitch() *killSwitch {
	ctx, kill := context.WithCancel(context.Background())
	return &killSwitch{ctx: ctx, kill: kill}
}

// call runs fn with ctx cut off when the switch is killed.
func killable[Req, Resp any](k *killSwitch, ctx context.Context, req Req, fn func(context.Context, Req) (Resp, error)) (Resp, error) {
	var zero Resp
	if k.ctx.Err() != nil {
		return zero, errKilled
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(k.ctx, cancel)()
	return fn(ctx, req)
}

// killableStore is a worker's view of the store through its kill switch.
type killableStore struct {
	st Store
	k  *killSwitch
}

func (s killableStore) LeaseClaims(ctx context.Context, req *pb.LeaseClaimsRequest) (*pb.LeaseClaimsResponse, error) {
	return killable(s.k, ctx, req, s.st.LeaseClaims)
}
func (s killableStore) MarkOrdering(ctx context.Context, req *pb.MarkOrderingRequest) (*pb.MarkOrderingResponse, error) {
	return killable(s.k, ctx, req, s.st.MarkOrdering)
}
func (s killableStore) MarkCancelling(ctx context.Context, req *pb.MarkCancellingRequest) (*pb.MarkCancellingResponse, error) {
	return killable(s.k, ctx, req, s.st.MarkCancelling)
}
func (s killableStore) Settle(ctx context.Context, req *pb.SettleRequest) (*pb.SettleResponse, error) {
	return killable(s.k, ctx, req, s.st.Settle)
}
func (s killableStore) Release(ctx context.Context, req *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	return killable(s.k, ctx, req, s.st.Release)
}

// transport is the worker's HTTP client through its kill switch.
func (k *killSwitch) transport() http.RoundTripper {
	base := &http.Transport{}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		return killable(k, r.Context(), r, func(ctx context.Context, r *http.Request) (*http.Response, error) {
			return base.RoundTrip(r.WithContext(ctx))
		})
	})
}

// TestNoOrderLostWhenWorkersDie: the order service records orders but
// loses many answers (timeouts, 500s), reservations expire (1 s) while
// orders are placed, and workers are killed (no grace: calls cut off
// mid-flight) and replaced throughout. In the end every order the service
// recorded is matched by exactly one settled claim or was cancelled, no
// claim is left open (to settle or to compensate), no order call came
// after a cancel of its key, and the stock counters agree with the claims.
func TestNoOrderLostWhenWorkersDie(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	const batches, perBatch, kills = 12, 20, 8
	const claims = batches * perBatch
	addrs, nodes := cluster(t, 3)
	st := storeClient(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	_, err := st.CreateCampaign(ctx, &pb.CreateCampaignRequest{Campaign: &pb.Campaign{
		Id: "spring", Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Start: timestamppb.New(time.Now().Add(-time.Minute)),
		ReservationTtl: durationpb.New(time.Second),
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
	orders := &lossyOrders{rng: rand.New(rand.NewPCG(5, 6)), decided: map[string]int{}, cancelled: map[string]bool{}, tombstones: map[string]bool{}}
	orderAddr := freeAddr(t)
	stopOrders := serveHandler(t, orderAddr, orders)
	defer stopOrders()

	type running struct {
		w    *Worker
		k    *killSwitch
		stop context.CancelFunc
		done chan struct{}
	}
	var workers []*running
	live := func() []int {
		var out []int
		for i, r := range workers {
			if r.k.ctx.Err() == nil {
				out = append(out, i)
			}
		}
		return out
	}
	start := func() {
		k := newKillSwitch()
		name := fmt.Sprint("w", len(workers))
		w, err := New(killableStore{st: st, k: k}, Config{
			Worker: name, Campaigns: []string{"spring"}, OrderURL: "http://" + orderAddr + "/orders", Concurrency: 3,
			Lease: 2500 * time.Millisecond, OrderTimeout: 400 * time.Millisecond, PollInterval: 50 * time.Millisecond,
			HTTPClient: &http.Client{Transport: k.transport()},
		})
		if err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		r := &running{w: w, k: k, stop: stop, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			if err := w.Run(wctx); err != nil {
				t.Errorf("worker %s: %v", name, err)
			}
		}()
		workers = append(workers, r)
	}
	stopAll := func() {
		for _, r := range workers {
			r.k.kill()
			r.stop()
		}
		for _, r := range workers {
			<-r.done
		}
	}
	defer stopAll()
	rng := rand.New(rand.NewPCG(7, 8))
	killOne := func() {
		l := live()
		r := workers[l[rng.IntN(len(l))]]
		r.k.kill() // kill -9: nothing more reaches the store or the order service
		r.stop()
		start()
	}
	start()
	start()

	killed := 0
	for b := range batches {
		req := &pb.ClaimBatchRequest{}
		for i := range perBatch {
			req.Claims = append(req.Claims, &pb.ClaimRequest{CampaignId: "spring", ItemId: "lantern", UserId: fmt.Sprint("user-", b*perBatch+i), Quantity: 1})
		}
		if _, err := st.ClaimBatch(ctx, req); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
		if b%2 == 1 && killed < kills {
			killOne()
			killed++
		}
	}
	for ; killed < kills; killed++ {
		time.Sleep(700 * time.Millisecond)
		killOne()
	}
	open := func() (n int) {
		for id := uint64(1); id <= claims; id++ {
			if c, _ := nodes[0].FSM().Claim(id); c.State != fsm.ClaimSettled && c.State != fsm.ClaimReleased {
				n++
			}
		}
		return n
	}
	for open() > 0 || !orders.idleFor(backoffMax+500*time.Millisecond) {
		if ctx.Err() != nil {
			orders.mu.Lock()
			inFlight, calls, since := orders.inFlight, orders.calls, time.Since(orders.lastEnd)
			orders.mu.Unlock()
			t.Fatalf("timed out with %d claims open; order service: %d calls, %d in flight, last ended %v ago", open(), calls, inFlight, since)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopAll()

	orders.mu.Lock()
	defer orders.mu.Unlock()
	var settled, cancelled, recorded uint64
	for id := uint64(1); id <= claims; id++ {
		claim, _ := nodes[0].FSM().Claim(id)
		key := fmt.Sprint(id)
		accepted := orders.decided[key] == http.StatusOK
		if accepted {
			recorded++
		}
		switch {
		case claim.State == fsm.ClaimSettled && accepted && !orders.cancelled[key]:
			settled++
		case claim.State == fsm.ClaimReleased && accepted && orders.cancelled[key]:
			cancelled++
		case claim.State == fsm.ClaimReleased && !accepted:
		default:
			t.Errorf("claim %d is %v; the order service decided %d, cancelled %v", id, claim.State, orders.decided[key], orders.cancelled[key])
		}
	}
	if len(orders.lateCreates) > 0 {
		t.Errorf("order calls after a cancel of their key: %v", orders.lateCreates)
	}
	checkStockSettled(ctx, t, st, nodes[0], settled)
	var total Stats
	for _, r := range workers {
		s := r.w.Stats()
		total.Settled += s.Settled
		total.Released += s.Released
		total.Expired += s.Expired
		total.Compensated += s.Compensated
		total.Cancelled += s.Cancelled
		total.NoOrder += s.NoOrder
		total.CancelFailed += s.CancelFailed
		total.Conflicts += s.Conflicts
		total.Dropped += s.Dropped
		total.Retries += s.Retries
	}
	t.Logf("%d orders recorded: %d settled, %d cancelled; %d answers lost; %d order calls; %d workers killed; workers %+v",
		recorded, settled, cancelled, orders.lost, orders.calls, kills, total)
	if orders.lost == 0 || cancelled == 0 || total.Compensated == 0 {
		t.Errorf("%d answers lost, %d orders cancelled, %d claims compensated: the test wants all three", orders.lost, cancelled, total.Compensated)
	}
}
