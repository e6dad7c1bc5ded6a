package frontdoor

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Store is what a front door needs of the store cluster. *client.Store
// provides it through NewStoreClient.
type Store interface {
	ClaimBatch(ctx context.Context, req *pb.ClaimBatchRequest) (*pb.ClaimBatchResponse, error)
	Watch(ctx context.Context, req *pb.WatchRequest) (WatchStream, error)
	AnnounceFrontDoor(ctx context.Context, req *pb.AnnounceFrontDoorRequest) (*pb.AnnounceFrontDoorResponse, error)
	GetItem(ctx context.Context, req *pb.GetItemRequest) (*pb.GetItemResponse, error)
	ListClaims(ctx context.Context, req *pb.ListClaimsRequest) (*pb.ListClaimsResponse, error)
}

// WatchStream is an open Store.Watch stream.
type WatchStream interface {
	Recv() (*pb.WatchEvent, error)
}

// NewStoreClient adapts the client library's Store to the front door's.
func NewStoreClient(s *client.Store) Store { return storeClient{s} }

type storeClient struct{ *client.Store }

func (s storeClient) Watch(ctx context.Context, req *pb.WatchRequest) (WatchStream, error) {
	return s.Store.Watch(ctx, req)
}

// Metadata a front door sends and reads for degradation level 3.
const (
	// MDDropFraction is set on every response at level 3: the fraction of
	// calls the client library should drop before sending them.
	MDDropFraction = "flashd-drop-fraction"
	// MDClientDrops is sent by a client library that applies the drop
	// fraction itself; at level 3 the front door drops at random only the
	// calls of clients that do not.
	MDClientDrops = "flashd-client-drops"
)

// retryBypassRate bounds, per front door, how many retries per second may
// skip the negative caches to ask the store for the first answer to their
// request ID; past it, retries are answered from the caches too.
const retryBypassRate = 1000

// Door is one front door: the funnel in front of a store cluster. It keeps
// no state that matters after a restart: its caches and buckets are
// relearnt from the store's watch stream, heartbeats and answers.
type Door struct {
	cfg       Config
	store     Store
	log       *slog.Logger
	auth      authenticator
	ips       *frequencyLimiter[netip.Addr]
	users     *frequencyLimiter[string]
	global    *globalLimiter
	catalog   *catalog
	hints     *limitHints
	coalescer *coalescer[*pendingClaim, *pb.Claim]
	draws     *coalescer[*pendingDraw, *pb.DrawCardResponse] // nil when the store takes no card calls
	drawHints *drawHints
	m         *metrics
	bypass    *rate.Limiter
	pools     poolsEmpty // card campaigns whose reward pool is empty

	funnel   atomic.Pointer[funnelState] // what the hot path reads
	admitted atomic.Int64                // claims past the global stage, for heartbeats
	watchGen atomic.Uint64               // which watch stream may mark the catalog synced

	mu         sync.Mutex // guards what follows
	funnelCfg  FunnelConfig
	haveConfig bool
	auto       autoLevel
	share      float64
	liveDoors  int
	announced  bool  // seen in the live set at least once
	lastShed   int64 // coalescer counters at the previous control tick
	lastIn     int64

	ready     chan struct{}
	readyOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

// funnelState is what the hot path reads of the replicated configuration,
// with every refusal it may answer built once.
type funnelState struct {
	cfg            FunnelConfig
	deg            degradation
	errIPLimited   error
	errUserLimited error
	errGlobal      error
	statuses       map[error]*pb.CallStatus // the three above, for ClaimMany
	dropHeader     metadata.MD              // level 3 only
}

// New returns a front door in front of store, registering its metrics on
// reg. Call Start, then serve it (NewServer), then Close.
func New(cfg Config, store Store, reg prometheus.Registerer) (*Door, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("front door config: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	d := &Door{
		cfg: cfg, store: store, log: cfg.Logger, m: m,
		ips:     newFrequencyLimiter[netip.Addr](cfg.TrackedIPsMax),
		users:   newFrequencyLimiter[string](cfg.TrackedUsersMax),
		global:  newGlobalLimiter(cfg.StrictGlobal),
		catalog: newCatalog(),
		hints:   newLimitHints(cfg.TrackedUsersMax),
		bypass:  rate.NewLimiter(retryBypassRate, retryBypassRate),
		share:   1,
		ready:   make(chan struct{}),
		stop:    make(chan struct{}),
	}
	switch cfg.AuthMode {
	case AuthToken:
		d.auth = newTokenAuth(cfg.TokenKey, cfg.TokenPolicy, cfg.TrackedUsersMax)
	default:
		d.auth = headerAuth{}
	}
	d.funnel.Store(newFunnelState(FunnelConfig{}, degradation{}))
	d.coalescer = newCoalescer(cfg, d.sendClaims, d.claimIsStale, m, m.claimBatches)
	if cs, ok := store.(CardStore); ok {
		d.drawHints = newDrawHints(cfg.TrackedUsersMax)
		d.draws = newCoalescer(cfg, d.drawSender(cs), d.drawIsStale, m, m.drawBatches)
	}
	if err := d.registerGauges(reg); err != nil {
		d.closeCoalescers()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return d, nil
}

func newFunnelState(cfg FunnelConfig, deg degradation) *funnelState {
	f := &funnelState{
		cfg: cfg, deg: deg,
		errIPLimited:   rateLimited("per-IP", cfg.PerIPRate),
		errUserLimited: rateLimited("per-user", cfg.PerUserRate),
		errGlobal:      rateLimited("global", cfg.GlobalRate),
	}
	f.statuses = map[error]*pb.CallStatus{}
	for _, err := range []error{f.errIPLimited, f.errUserLimited, f.errGlobal} {
		f.statuses[err] = pb.NewCallStatus(err)
	}
	if deg.level >= 3 {
		f.dropHeader = metadata.Pairs(MDDropFraction, strconv.FormatFloat(deg.drop, 'f', -1, 64))
	}
	return f
}

// Start starts the watch, heartbeat and control loops.
func (d *Door) Start() {
	d.wg.Add(3)
	go d.watchLoop()
	go d.announceLoop()
	go d.controlLoop()
}

// Ready is closed once the door knows the funnel configuration and the
// catalog (the store answered).
func (d *Door) Ready() <-chan struct{} { return d.ready }

// Close stops the loops and the coalescer; claims still queued are refused
// with UNAVAILABLE, batches in flight finish (bounded by the store timeout).
func (d *Door) Close() {
	close(d.stop)
	d.wg.Wait()
	d.closeCoalescers()
}

func (d *Door) closeCoalescers() {
	d.coalescer.close()
	if d.draws != nil {
		d.draws.close()
	}
}

// Claim runs a claim through the funnel. It is the FrontDoor.Claim RPC
// without the transport: the user comes from ctx's metadata.
func (d *Door) Claim(ctx context.Context, req *pb.FrontDoorClaimRequest) (*pb.FrontDoorClaimResponse, error) {
	c := d.callerOf(ctx)
	p, replay, err := d.admitClaim(&c, req, d.cfg.Now())
	switch {
	case err != nil:
		return nil, err
	case replay != nil:
		return claimResponse(replay), nil
	}
	ctx, cancel := d.claimContext(ctx)
	defer cancel()
	res := d.coalescer.submit(ctx, p)
	if res.err != nil {
		return nil, res.err
	}
	return claimResponse(res.value), nil
}

// claimContext bounds a claim whose caller set no deadline.
func (d *Door) claimContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d.cfg.ClaimTimeout)
}

// admitCaller runs the funnel's stages 1 to 4 for a caller and returns its
// user: authentication, frequency control, then, for a call that spends
// stock or chances (spends), this door's share of the global rate limit
// and the degradation drop. Reads stop after frequency control.
func (d *Door) admitCaller(c *caller, f *funnelState, now time.Time, spends bool) (string, error) {
	// 1. Authentication.
	user, err := d.auth.authenticate(c, now)
	if err != nil {
		d.countAuth(err)
		return "", err
	}
	d.m.authOK.Inc()

	// 2. Frequency control, per client IP then per user.
	if r := f.cfg.PerIPRate; r > 0 && c.hasIP && !d.ips.allow(c.ip, r, now) {
		d.m.freqIP.Inc()
		return "", f.errIPLimited
	}
	if !d.users.allow(user, f.cfg.PerUserRate, now) {
		d.m.freqUser.Inc()
		return "", f.errUserLimited
	}
	d.m.freqOK.Inc()
	if !spends {
		return user, nil
	}

	// 3. This door's share of the global rate limit.
	if !d.global.allow(now) {
		d.m.globalLimited.Inc()
		return "", f.errGlobal
	}
	d.m.globalOK.Inc()
	d.admitted.Add(1)

	// 4. Degradation L2 (and L3 for clients that do not drop themselves).
	if f.deg.drop > 0 && (f.deg.level == 2 || !c.clientDrops) && rand.Float64() < f.deg.drop {
		d.m.dropDropped.Inc()
		return "", errDropped
	}
	d.m.dropOK.Inc()
	return user, nil
}

// admitClaim runs a claim through the funnel's stages 1 to 6. It returns
// the claim to queue for the store, or the earlier grant of its request ID
// (replay) that the caches remember, or the refusal.
func (d *Door) admitClaim(c *caller, req *pb.FrontDoorClaimRequest, now time.Time) (p *pendingClaim, replay *pb.Claim, err error) {
	f := d.funnel.Load()
	user, err := d.admitCaller(c, f, now, true)
	if err != nil {
		return nil, nil, err
	}

	// 5. Early validation.
	quantity := max(req.GetQuantity(), 1)
	it, err := d.validate(req, user, quantity, now)
	if err != nil {
		return nil, nil, err
	}
	d.m.validOK.Inc()

	// 6. Caches: sold out, limit reached (hints; a retry may skip them).
	hintKey := userItemKey{user, req.GetCampaignId(), req.GetItemId()}
	bypass := req.GetRetry() && req.GetRequestId() != "" && d.bypass.AllowN(now, 1)
	switch {
	case bypass:
		d.m.cacheBypassed.Inc()
	case it != nil && it.soldOut.Load(): // nothing available: no quantity fits
		d.m.cacheSoldOut.Inc()
		return nil, nil, errSoldOut
	default:
		var limit uint32
		if it != nil {
			limit = it.perUserLimit.Load()
		}
		replay, reached := d.hints.check(hintKey, req.GetRequestId(), quantity, limit, now)
		switch {
		case replay != nil:
			d.m.cacheReplayed.Inc()
			return nil, replay, nil
		case reached:
			d.m.cacheLimit.Inc()
			return nil, nil, errLimitReached
		}
		d.m.cacheOK.Inc()
	}

	// 7 is the caller's: the coalescer, then the store.
	requestID := req.GetRequestId()
	if requestID == "" {
		requestID = client.NewRequestID()
	}
	p = &pendingClaim{item: it, bypass: bypass}
	p.claim = pb.ClaimRequest{
		RequestId: requestID, CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(),
		UserId: user, Quantity: quantity,
	}
	p.req = &p.claim
	return p, nil, nil
}

func claimResponse(c *pb.Claim) *pb.FrontDoorClaimResponse {
	return &pb.FrontDoorClaimResponse{
		ClaimId: c.GetId(), State: c.GetState(), Deadline: c.GetDeadline(), RequestId: c.GetRequestId(), Claim: c,
	}
}

func (d *Door) countAuth(err error) {
	switch err {
	case errMissingToken:
		d.m.authMissing.Inc()
	case errTokenExpired:
		d.m.authExpired.Inc()
	default:
		d.m.authInvalid.Inc()
	}
}

// validate is stage 5: the request's fields, then what the catalog knows
// of the campaign (open, the user's entry wave open) and the item. It
// returns the item's catalog entry, nil if unknown. When the catalog is not
// in sync with the store, what it does not know goes on to the store.
func (d *Door) validate(req *pb.FrontDoorClaimRequest, user string, quantity uint32, now time.Time) (*itemEntry, error) {
	if err := validateClaimFields(req); err != nil {
		d.m.validBad.Inc()
		return nil, invalidArgument(err)
	}
	synced := d.catalog.synced.Load()
	ce := d.catalog.campaign(req.GetCampaignId())
	var info *campaignInfo
	if ce != nil {
		info = ce.info.Load()
	}
	if info == nil {
		if synced {
			d.m.validNoCampaign.Inc()
			return nil, errCampaignNotFound
		}
		return nil, nil
	}
	if info.kind != pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE {
		d.m.validWrongKind.Inc()
		return nil, errWrongKind
	}
	early := now.Add(clockSkewAllowance).UnixNano()
	if info.state != pb.CampaignState_CAMPAIGN_STATE_OPEN || early < info.start ||
		(info.end != 0 && now.UnixNano() >= info.end) {
		d.m.validClosed.Inc()
		return nil, errCampaignClosed
	}
	if info.waveCount > 1 {
		w := EntryWave(user, info.waveCount)
		if opens := info.waveOpensAt(w); early < opens {
			d.m.validNotEligible.Inc()
			return nil, notEligible(w, time.Unix(0, opens), now)
		}
	}
	it := d.catalog.item(req.GetCampaignId(), req.GetItemId())
	if it == nil {
		if synced {
			d.m.validNoItem.Inc()
			return nil, errItemNotFound
		}
		return nil, nil
	}
	if limit := it.perUserLimit.Load(); limit != 0 && quantity > limit {
		d.m.validBad.Inc()
		return nil, invalidArgument(fmt.Errorf("quantity %d is above the per-user limit %d", quantity, limit))
	}
	return it, nil
}

// validateClaimFields checks the IDs and the quantity of a claim request.
func validateClaimFields(req *pb.FrontDoorClaimRequest) error {
	if err := pb.ValidateID("campaign id", req.GetCampaignId()); err != nil {
		return err
	}
	if err := pb.ValidateID("item id", req.GetItemId()); err != nil {
		return err
	}
	if id := req.GetRequestId(); id != "" {
		if err := pb.ValidateID("request id", id); err != nil {
			return err
		}
	}
	if req.GetRetry() && req.GetRequestId() == "" {
		return fmt.Errorf("a retry must carry the request id of the first attempt")
	}
	if req.GetQuantity() > math.MaxUint16 {
		return fmt.Errorf("quantity %d is too large", req.GetQuantity())
	}
	return nil
}

// sendClaims is the claims' coalescer's batchSender: one ClaimBatch.
func (d *Door) sendClaims(ctx context.Context, batch []*pendingClaim) ([]claimResult, error) {
	req := &pb.ClaimBatchRequest{Claims: make([]*pb.ClaimRequest, len(batch))}
	for i, p := range batch {
		req.Claims[i] = p.req
	}
	resp, err := d.store.ClaimBatch(ctx, req)
	if err == nil && len(resp.GetOutcomes()) != len(batch) {
		err = errBadBatchAnswer
	}
	return d.answerBatch(batch, resp, err), err
}

// claimIsStale refuses a claim whose item sold out while it waited.
func (d *Door) claimIsStale(p *pendingClaim) error {
	if !p.bypass && p.item != nil && p.item.soldOut.Load() {
		d.m.coalSoldOut.Inc()
		return errSoldOut
	}
	return nil
}

// answerBatch learns from each outcome of a claim batch (sold out,
// limits) and turns it into the caller's result. resp is unused when err
// is set.
func (d *Door) answerBatch(batch []*pendingClaim, resp *pb.ClaimBatchResponse, err error) []claimResult {
	out := make([]claimResult, len(batch))
	if err != nil {
		e := batchError(err)
		d.m.storeErr.Add(float64(len(batch)))
		d.log.Debug("claim batch failed", "claims", len(batch), "err", err)
		for i := range out {
			out[i].err = e
		}
		return out
	}
	now := d.cfg.Now()
	index := resp.GetIndex()
	for i, o := range resp.GetOutcomes() {
		p := batch[i]
		key := userItemKey{p.req.GetUserId(), p.req.GetCampaignId(), p.req.GetItemId()}
		switch o.GetReason() {
		case pb.Reason_REASON_UNSPECIFIED:
			d.m.storeGranted.Inc()
			d.hints.learnGrant(key, o.GetClaim(), now)
			out[i].value = o.GetClaim()
			continue
		// A retry's refusal may be the store replaying its first answer
		// to that request ID, older than index: nothing is learnt from it.
		case pb.Reason_REASON_SOLD_OUT:
			d.m.storeSoldOut.Inc()
			if it := d.itemOf(p); it != nil && p.req.GetQuantity() == 1 && !p.bypass {
				it.learnSoldOut(index)
			}
		case pb.Reason_REASON_LIMIT_REACHED:
			d.m.storeLimit.Inc()
			// Refusing q units proves only held > limit-q: the user is at
			// the limit only when one unit was refused (found by the chaos
			// runner, deploy/chaos/run --quantity-max 2 --seed 11).
			if !p.bypass && p.req.GetQuantity() == 1 {
				d.hints.learnReached(key, now)
			}
		default:
			d.m.storeRefused.Inc()
		}
		out[i].err = outcomeError(o)
	}
	return out
}

func (d *Door) itemOf(p *pendingClaim) *itemEntry {
	if p.item != nil {
		return p.item
	}
	return d.catalog.item(p.req.GetCampaignId(), p.req.GetItemId())
}
