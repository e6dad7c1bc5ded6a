package frontdoor

import (
	"context"
	"fmt"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// ClaimManyMax bounds the claims of one ClaimMany call: enough to carry a
// whole store batch, small enough that one call's answer stays far below
// gRPC's 4 MiB message limit (a granted claim is about 100 bytes).
const ClaimManyMax = 1024

// ClaimMany runs many claims through the funnel in one call, each as its
// own Claim call would run, with its own caller. Claims that pass the
// funnel are queued to the coalescer together and answered when the store
// has applied them; refusals are answered at once. The call fails as a
// whole only when it is malformed (too many claims) or its context ends.
func (d *Door) ClaimMany(ctx context.Context, req *pb.ClaimManyRequest) (*pb.ClaimManyResponse, error) {
	entries := req.GetClaims()
	if len(entries) > ClaimManyMax {
		d.m.validBad.Add(float64(len(entries)))
		return nil, invalidArgument(fmt.Errorf("%d claims in one call: at most %d", len(entries), ClaimManyMax))
	}
	now := d.cfg.Now()
	call := d.callerOf(ctx)
	outcomes := make([]pb.ClaimManyOutcome, len(entries)) // one allocation for all
	out := make([]*pb.ClaimManyOutcome, len(entries))
	for i := range out {
		out[i] = &outcomes[i]
	}
	pending := make([]*pendingClaim, 0, len(entries))
	at := make([]int, 0, len(entries)) // pending[k] answers out[at[k]]
	for i, e := range entries {
		c := d.callerOfEntry(call, e)
		p, replay, err := d.admitClaim(&c, e.GetClaim(), now)
		switch {
		case err != nil:
			out[i].Error = d.claimStatus(err)
		case replay != nil:
			out[i].Claim = replay
		default:
			pending = append(pending, p)
			at = append(at, i)
		}
	}
	if len(pending) > 0 {
		ctx, cancel := d.claimContext(ctx)
		defer cancel()
		for k, r := range d.coalescer.submitMany(ctx, pending) {
			if r.err != nil {
				out[at[k]].Error = d.claimStatus(r.err)
			} else {
				out[at[k]].Claim = r.value
			}
		}
	}
	return &pb.ClaimManyResponse{Outcomes: out}, nil
}

// claimStatus is the ClaimStatus of a refusal. The refusals that never
// change (sold out above all) are converted once: after a sell-out a whole
// call of them costs no allocation for its statuses.
func (d *Door) claimStatus(err error) *pb.ClaimStatus {
	if s, ok := staticStatuses[err]; ok {
		return s
	}
	f := d.funnel.Load()
	switch err {
	case f.errIPLimited, f.errUserLimited, f.errGlobal:
		return f.statuses[err]
	}
	return pb.NewClaimStatus(err)
}

// staticStatuses are the refusals built once at start (errors.go), as
// ClaimStatus messages. Read-only after initialisation.
var staticStatuses = func() map[error]*pb.ClaimStatus {
	m := map[error]*pb.ClaimStatus{}
	for _, err := range []error{
		errSoldOut, errLimitReached, errCampaignClosed, errCampaignNotFound, errItemNotFound, errWrongKind,
		errMissingToken, errTokenExpired, errInvalidToken, errStoreDown, errQueueFull, errDropped, errShed,
		errStoreOverloaded, errShuttingDown, errOutcomeUnknown,
	} {
		m[err] = pb.NewClaimStatus(err)
	}
	return m
}()
