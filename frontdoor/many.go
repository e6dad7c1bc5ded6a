package frontdoor

import (
	"context"
	"fmt"

	"google.golang.org/grpc/status"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// ManyMax bounds the claims of one ClaimMany call and the draws of one
// DrawMany call: enough to carry a whole store batch, small enough that one
// call's answer stays far below gRPC's 4 MiB message limit (a granted claim
// is about 100 bytes).
const ManyMax = 1024

// ClaimMany runs many claims through the funnel in one call, each as its
// own Claim call would run, with its own caller. Claims that pass the
// funnel are queued to the coalescer together and answered when the store
// has applied them; refusals are answered at once. The call fails as a
// whole only when it is malformed (too many claims) or its context ends.
func (d *Door) ClaimMany(ctx context.Context, req *pb.ClaimManyRequest) (*pb.ClaimManyResponse, error) {
	entries := req.GetClaims()
	if err := d.checkMany("claims", len(entries)); err != nil {
		return nil, err
	}
	now := d.cfg.Now()
	call := d.callerOf(ctx)
	ctx, cancel := d.claimContext(ctx)
	defer cancel()
	results := runMany(ctx, d.coalescer, len(entries), func(i int) (*pendingClaim, *pb.Claim, error) {
		c := d.callerOfEntry(call, entries[i])
		return d.admitClaim(&c, entries[i].GetClaim(), now)
	})
	outcomes := make([]pb.ClaimManyOutcome, len(entries)) // one allocation for all
	out := make([]*pb.ClaimManyOutcome, len(entries))
	for i, r := range results {
		out[i] = &outcomes[i]
		if r.err != nil {
			out[i].Error = d.callStatus(r.err)
		} else {
			out[i].Claim = r.value
		}
	}
	return &pb.ClaimManyResponse{Outcomes: out}, nil
}

// DrawMany runs many card draws through the funnel in one call, each as its
// own DrawCard call would run, with its own caller, as ClaimMany does.
func (d *Door) DrawMany(ctx context.Context, req *pb.DrawManyRequest) (*pb.DrawManyResponse, error) {
	entries := req.GetDraws()
	if err := d.checkMany("draws", len(entries)); err != nil {
		return nil, err
	}
	now := d.cfg.Now()
	call := d.callerOf(ctx)
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	results := runMany(ctx, d.draws, len(entries), func(i int) (*pendingDraw, *pb.DrawCardResponse, error) {
		c := d.callerOfEntry(call, entries[i])
		p, err := d.admitDraw(&c, entries[i].GetDraw(), now)
		return p, nil, err
	})
	outcomes := make([]pb.DrawManyOutcome, len(entries))
	out := make([]*pb.DrawManyOutcome, len(entries))
	for i, r := range results {
		out[i] = &outcomes[i]
		if r.err != nil {
			out[i].Error = d.callStatus(r.err)
			continue
		}
		d.m.reads.WithLabelValues("DrawCard", "ok").Inc()
		out[i].Draw = r.value
	}
	return &pb.DrawManyResponse{Outcomes: out}, nil
}

// checkMany refuses a call of more than ManyMax entries.
func (d *Door) checkMany(what string, n int) error {
	if n <= ManyMax {
		return nil
	}
	d.m.validBad.Add(float64(n))
	return invalidArgument(fmt.Errorf("%d %s in one call: at most %d", n, what, ManyMax))
}

// runMany answers the n entries of a ClaimMany or DrawMany call. admit runs
// entry i through the funnel and returns it to queue for the store, or its
// answer without the store (a replay the caches remember), or its refusal;
// the entries to queue go to the coalescer together, and their results
// come back in order.
func runMany[E entry[E, V], V comparable](ctx context.Context, co *coalescer[E, V], n int,
	admit func(i int) (E, V, error),
) []result[V] {
	var zero V
	out := make([]result[V], n)
	pending := make([]E, 0, n)
	at := make([]int, 0, n) // pending[k] answers out[at[k]]
	for i := range n {
		p, answer, err := admit(i)
		switch {
		case err != nil:
			out[i].err = err
		case answer != zero:
			out[i].value = answer
		default:
			pending = append(pending, p)
			at = append(at, i)
		}
	}
	if len(pending) > 0 {
		for k, r := range co.submitMany(ctx, pending) {
			out[at[k]] = r
		}
	}
	return out
}

// callStatus is the CallStatus of a refusal. The refusals that never
// change (sold out above all) are converted once: after a sell-out a whole
// call of them costs no allocation for its statuses.
func (d *Door) callStatus(err error) *pb.CallStatus {
	// Only status errors (pointers) are looked up: a map lookup of an
	// error whose dynamic type is not comparable would panic.
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		if s, ok := staticStatuses[err]; ok {
			return s
		}
		f := d.funnel.Load()
		if s, ok := f.statuses[err]; ok {
			return s
		}
	}
	return pb.NewCallStatus(err)
}

// staticStatuses are the refusals built once at start (errors.go), as
// CallStatus messages. Read-only after initialisation.
var staticStatuses = func() map[error]*pb.CallStatus {
	m := map[error]*pb.CallStatus{}
	for _, err := range []error{
		errSoldOut, errLimitReached, errCampaignClosed, errCampaignNotFound, errItemNotFound, errWrongKind,
		errMissingToken, errTokenExpired, errInvalidToken, errStoreDown, errQueueFull, errDropped, errShed,
		errStoreOverloaded, errShuttingDown, errOutcomeUnknown,
	} {
		m[err] = pb.NewCallStatus(err)
	}
	return m
}()
