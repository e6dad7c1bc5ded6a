package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// errorDomain is the google.rpc.ErrorInfo domain of every flashd reason.
const errorDomain = "flashd"

// ErrorInfo reasons of the front door's own refusals. Business refusals use
// the store's names (pb.Reason without its prefix), so a client reads the
// same reason whether the front door or the store refused.
const (
	reasonRateLimited      = "RATE_LIMITED"      // per-IP, per-user or global limit
	reasonDegraded         = "DEGRADED"          // L2 random drop
	reasonOverloaded       = "OVERLOADED"        // L1 adaptive limit, full queue
	reasonStoreUnavailable = "STORE_UNAVAILABLE" // the store did not answer
	reasonMissingToken     = "MISSING_TOKEN"
	reasonTokenExpired     = "TOKEN_EXPIRED"
	reasonInvalidToken     = "INVALID_TOKEN"
	reasonShuttingDown     = "SHUTTING_DOWN"
)

// Metadata keys of ErrorInfo.
const (
	metaWaveOpensAt = "wave_opens_at" // RFC 3339, on NOT_ELIGIBLE
	metaWave        = "wave"
)

// Refusals that never change are built once, details included, so that the
// hottest answers (sold out above all) cost no allocation. A status error is
// immutable: the same value may be returned to many calls at once.
var (
	errSoldOut          = newStatusError(codes.FailedPrecondition, reasonName(pb.Reason_REASON_SOLD_OUT), "sold out", nil, 0)
	errLimitReached     = newStatusError(codes.FailedPrecondition, reasonName(pb.Reason_REASON_LIMIT_REACHED), "per-user limit reached", nil, 0)
	errCampaignClosed   = newStatusError(codes.FailedPrecondition, reasonName(pb.Reason_REASON_CAMPAIGN_CLOSED), "campaign is not open", nil, 0)
	errCampaignNotFound = newStatusError(codes.NotFound, reasonName(pb.Reason_REASON_CAMPAIGN_NOT_FOUND), "no such campaign", nil, 0)
	errItemNotFound     = newStatusError(codes.NotFound, reasonName(pb.Reason_REASON_ITEM_NOT_FOUND), "no such item in this campaign", nil, 0)
	errWrongKind        = newStatusError(codes.InvalidArgument, reasonName(pb.Reason_REASON_WRONG_CAMPAIGN_KIND), "this campaign takes no claims", nil, 0)
	errMissingToken     = newStatusError(codes.Unauthenticated, reasonMissingToken, "missing credentials", nil, 0)
	errTokenExpired     = newStatusError(codes.Unauthenticated, reasonTokenExpired, "token expired", nil, 0)
	errInvalidToken     = newStatusError(codes.Unauthenticated, reasonInvalidToken, "invalid token", nil, 0)
	errStoreDown        = newStatusError(codes.Unavailable, reasonStoreUnavailable, "store unavailable, retry with the same request id", nil, 0)
	errQueueFull        = newStatusError(codes.ResourceExhausted, reasonOverloaded, "front door queue full", nil, overloadRetry)
	errDropped          = newStatusError(codes.ResourceExhausted, reasonDegraded, "dropped under load (degradation), retry later", nil, degradedRetry)
	errShed             = newStatusError(codes.ResourceExhausted, reasonOverloaded, "front door shedding load (adaptive limit)", nil, overloadRetry)
	errStoreOverloaded  = newStatusError(codes.ResourceExhausted, reasonOverloaded, "store overloaded", nil, overloadRetry)
	errShuttingDown     = newStatusError(codes.Unavailable, reasonShuttingDown, "front door shutting down, retry elsewhere with the same request id", nil, 0)
	errOutcomeUnknown   = newStatusError(codes.Unavailable, reasonStoreUnavailable, "store did not answer in time, retry with the same request id", nil, storeRetryAfter)
)

// errBadBatchAnswer: the store answered a batch with the wrong number of
// outcomes (a bug on one side).
var errBadBatchAnswer = errors.New("store answered a batch with the wrong number of outcomes")

// storeDown reports whether a batch error means no store node answered.
func storeDown(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// batchError turns a batch's error into what each of its callers sees.
// The claims may or may not have been applied: every answer but a refusal
// of the request itself tells the caller to retry with the same request ID.
func batchError(err error) error {
	switch status.Code(err) {
	case codes.InvalidArgument:
		return invalidArgument(err)
	case codes.ResourceExhausted:
		return errStoreOverloaded
	case codes.Unavailable:
		return errStoreDown
	}
	return errOutcomeUnknown
}

// contextError is the status of a call whose context ended.
func contextError(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}

// Retry hints.
const (
	overloadRetry   = 200 * time.Millisecond // full queue, adaptive limit
	degradedRetry   = time.Second            // L2 drop: come back later
	rateRetryMin    = 10 * time.Millisecond
	rateRetryMax    = 10 * time.Second
	waveRetryMax    = time.Hour
	storeRetryAfter = 100 * time.Millisecond
)

func reasonName(r pb.Reason) string { return strings.TrimPrefix(r.String(), "REASON_") }

// newStatusError builds a status error with an ErrorInfo and, if retry >
// 0, a RetryInfo.
func newStatusError(code codes.Code, reason, msg string, meta map[string]string, retry time.Duration) error {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// invalidArgument refuses a malformed request.
func invalidArgument(err error) error {
	return newStatusError(codes.InvalidArgument, reasonName(pb.Reason_REASON_INVALID_ARGUMENT), err.Error(), nil, 0)
}

// notEligible refuses a claim made before the user's entry wave opens; the
// metadata and the retry hint say when it does (the client library does not
// retry FAILED_PRECONDITION by itself: an app may show a countdown).
func notEligible(wave uint32, opensAt time.Time, now time.Time) error {
	meta := map[string]string{metaWave: fmt.Sprint(wave), metaWaveOpensAt: opensAt.UTC().Format(time.RFC3339Nano)}
	return newStatusError(codes.FailedPrecondition, reasonName(pb.Reason_REASON_NOT_ELIGIBLE),
		"your entry wave is not open yet", meta, min(max(opensAt.Sub(now), time.Millisecond), waveRetryMax))
}

// rateLimited returns the refusal of a limit of r per second.
func rateLimited(what string, r float64) error {
	d := rateRetryMax
	if r > 0 {
		d = min(max(time.Duration(float64(time.Second)/r), rateRetryMin), rateRetryMax)
	}
	return newStatusError(codes.ResourceExhausted, reasonRateLimited, what+" rate limit", nil, d)
}

// outcomeError turns a store refusal into the status the caller sees.
func outcomeError(o *pb.ClaimOutcome) error {
	switch o.GetReason() {
	case pb.Reason_REASON_SOLD_OUT:
		return errSoldOut
	case pb.Reason_REASON_LIMIT_REACHED:
		return errLimitReached
	case pb.Reason_REASON_CAMPAIGN_CLOSED:
		return errCampaignClosed
	}
	return newStatusError(reasonCode(o.GetReason()), reasonName(o.GetReason()), o.GetMessage(), nil, 0)
}

// reasonCode is the status code of a refusal, as the store gives it.
func reasonCode(r pb.Reason) codes.Code {
	switch r {
	case pb.Reason_REASON_CAMPAIGN_NOT_FOUND, pb.Reason_REASON_ITEM_NOT_FOUND, pb.Reason_REASON_CLAIM_NOT_FOUND:
		return codes.NotFound
	case pb.Reason_REASON_INVALID_ARGUMENT, pb.Reason_REASON_WRONG_CAMPAIGN_KIND:
		return codes.InvalidArgument
	case pb.Reason_REASON_ALREADY_EXISTS:
		return codes.AlreadyExists
	}
	return codes.FailedPrecondition
}
