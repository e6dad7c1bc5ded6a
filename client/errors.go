package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

// Sentinel errors, matched with errors.Is. An error from a call matches the
// sentinel of the server's reason (ErrSoldOut) and the one of its gRPC code
// (ErrFailedPrecondition); a NOT_LEADER refusal matches both ErrNotLeader and
// ErrUnavailable; a DEADLINE_EXCEEDED status matches context.DeadlineExceeded.
var (
	// Business refusals (FAILED_PRECONDITION). Never retried.
	ErrSoldOut           = errors.New("sold out")
	ErrLimitReached      = errors.New("per-user limit reached")
	ErrNotEligible       = errors.New("not eligible yet")
	ErrCampaignClosed    = errors.New("campaign closed")
	ErrInsufficientStock = errors.New("insufficient stock")
	ErrAlreadySettled    = errors.New("already settled")
	ErrAlreadyReleased   = errors.New("already released")
	ErrRequestIDReused   = errors.New("request ID reused with a different request")
	ErrWrongCampaignKind = errors.New("wrong campaign kind")
	ErrNoDrawsLeft       = errors.New("no draw chance left")
	ErrNoFullSet         = errors.New("no full set of cards")
	ErrPoolEmpty         = errors.New("reward pool empty")
	// ErrCompensating: the claim's order is to be, or is being, cancelled
	// (a settle or an order mark came too late); ErrNotCompensating: a
	// cancel mark of a claim that is not to be compensated.
	ErrCompensating    = errors.New("claim's order is being compensated")
	ErrNotCompensating = errors.New("claim is not to be compensated")
	// ErrFailedPrecondition matches every business refusal.
	ErrFailedPrecondition = errors.New("failed precondition")

	// Request errors. Never retried.
	ErrNotFound         = errors.New("not found")
	ErrAlreadyExists    = errors.New("already exists")
	ErrInvalidArgument  = errors.New("invalid argument")
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrTokenExpired     = errors.New("token expired") // also ErrUnauthenticated
	ErrPermissionDenied = errors.New("permission denied")

	// Transient errors. Retried within the call's attempts, deadline and
	// retry budget.
	ErrNotLeader   = errors.New("not leader")
	ErrUnavailable = errors.New("unavailable")
	// ErrOverloaded matches every RESOURCE_EXHAUSTED answer: rate limited,
	// dropped under load, queue full, and the client's own drops.
	ErrOverloaded  = errors.New("overloaded")
	ErrRateLimited = errors.New("rate limited") // also ErrOverloaded
	// ErrStoreFailing: a front door could not reach the store (a leader
	// election, most likely). Also ErrUnavailable.
	ErrStoreFailing = errors.New("store unavailable behind the front door")

	// ErrDropped: the client dropped the call itself, sending nothing,
	// because the front doors asked it to shed a share of its calls
	// (degradation level 3). It also matches ErrOverloaded.
	ErrDropped = errors.New("dropped by the client under load")

	// ErrRetryBudgetExhausted: a retry was due but the client's retry
	// budget could not pay for it (see WithRetryBudget). The error also
	// matches the last failure.
	ErrRetryBudgetExhausted = errors.New("retry budget exhausted")

	// ErrClosed is returned by calls on a closed Client or Store.
	ErrClosed = errors.New("client closed")
)

// Error domain and reasons that have a meaning for the client itself.
const (
	errorDomain            = "flashd"
	reasonNotLeader        = "NOT_LEADER"
	reasonStoreUnavailable = "STORE_UNAVAILABLE" // a front door could not reach the store
	reasonShuttingDown     = "SHUTTING_DOWN"     // refused before any work
	reasonClientDropped    = "CLIENT_DROPPED"    // the client's own L3 drop
	metaLeaderAddr         = "leader_addr"
	reasonEnumPrefix       = "REASON_"
)

// Error is a refusal or failure reported by a flashd server (or by gRPC on
// its way there). It keeps the gRPC status, so status.Code(err) still works.
type Error struct {
	Code       codes.Code
	Reason     string            // google.rpc.ErrorInfo reason, "" if none
	Message    string            // the server's message
	Metadata   map[string]string // google.rpc.ErrorInfo metadata
	RetryAfter time.Duration     // google.rpc.RetryInfo delay, 0 if none

	status *status.Status
}

// newError turns an error returned by a gRPC stub into an *Error.
func newError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	st, _ := status.FromError(err)
	e = &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason = d.GetReason()
			e.Metadata = d.GetMetadata()
		case *errdetails.RetryInfo:
			e.RetryAfter = d.GetRetryDelay().AsDuration()
		}
	}
	return e
}

// outcomeError turns a refused ClaimOutcome into an *Error, as if the server
// had returned the refusal as a status.
func outcomeError(o *flashdpb.ClaimOutcome) *Error {
	reason := strings.TrimPrefix(o.GetReason().String(), reasonEnumPrefix)
	code := codes.FailedPrecondition
	switch o.GetReason() {
	case flashdpb.Reason_REASON_CAMPAIGN_NOT_FOUND, flashdpb.Reason_REASON_ITEM_NOT_FOUND, flashdpb.Reason_REASON_CLAIM_NOT_FOUND:
		code = codes.NotFound
	case flashdpb.Reason_REASON_INVALID_ARGUMENT, flashdpb.Reason_REASON_WRONG_CAMPAIGN_KIND:
		code = codes.InvalidArgument
	case flashdpb.Reason_REASON_ALREADY_EXISTS:
		code = codes.AlreadyExists
	}
	st := status.New(code, o.GetMessage())
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}); err == nil {
		st = withInfo
	}
	return &Error{Code: code, Reason: reason, Message: o.GetMessage(), status: st}
}

// Error reads "sold out (SOLD_OUT): <server message>".
func (e *Error) Error() string {
	var b strings.Builder
	what := e.describe()
	b.WriteString(what)
	if e.Reason != "" {
		b.WriteString(" (" + e.Reason + ")")
	}
	if e.Message != "" && e.Message != what {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

func (e *Error) describe() string {
	if s := e.reasonSentinel(); s != nil {
		return s.Error()
	}
	if s := e.codeSentinel(); s != nil {
		return s.Error()
	}
	// "DeadlineExceeded" -> "deadline exceeded"
	var b strings.Builder
	for i, r := range e.Code.String() {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte(' ')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Is reports whether target is the sentinel of e's reason or of its code.
func (e *Error) Is(target error) bool {
	if target == nil {
		return false
	}
	return target == e.reasonSentinel() || target == e.codeSentinel()
}

// GRPCStatus returns the status the server sent.
func (e *Error) GRPCStatus() *status.Status {
	return e.status
}

func (e *Error) reasonSentinel() error {
	switch e.Reason {
	case "SOLD_OUT":
		return ErrSoldOut
	case "LIMIT_REACHED":
		return ErrLimitReached
	case "NOT_ELIGIBLE":
		return ErrNotEligible
	case "CAMPAIGN_CLOSED":
		return ErrCampaignClosed
	case "INSUFFICIENT_STOCK":
		return ErrInsufficientStock
	case "ALREADY_SETTLED":
		return ErrAlreadySettled
	case "ALREADY_RELEASED":
		return ErrAlreadyReleased
	case "REQUEST_ID_REUSED":
		return ErrRequestIDReused
	case "WRONG_CAMPAIGN_KIND":
		return ErrWrongCampaignKind
	case "NO_DRAWS_LEFT":
		return ErrNoDrawsLeft
	case "NO_FULL_SET":
		return ErrNoFullSet
	case "POOL_EMPTY":
		return ErrPoolEmpty
	case "COMPENSATING":
		return ErrCompensating
	case "NOT_COMPENSATING":
		return ErrNotCompensating
	case "CAMPAIGN_NOT_FOUND", "ITEM_NOT_FOUND", "CLAIM_NOT_FOUND":
		return ErrNotFound
	case "ALREADY_EXISTS":
		return ErrAlreadyExists
	case "INVALID_ARGUMENT":
		return ErrInvalidArgument
	case reasonNotLeader:
		return ErrNotLeader
	case "RATE_LIMITED":
		return ErrRateLimited
	case "TOKEN_EXPIRED":
		return ErrTokenExpired
	case reasonStoreUnavailable:
		return ErrStoreFailing
	case reasonClientDropped:
		return ErrDropped
	}
	return nil
}

func (e *Error) codeSentinel() error {
	switch e.Code {
	case codes.FailedPrecondition:
		return ErrFailedPrecondition
	case codes.NotFound:
		return ErrNotFound
	case codes.AlreadyExists:
		return ErrAlreadyExists
	case codes.InvalidArgument:
		return ErrInvalidArgument
	case codes.Unauthenticated:
		return ErrUnauthenticated
	case codes.PermissionDenied:
		return ErrPermissionDenied
	case codes.Unavailable:
		return ErrUnavailable
	case codes.ResourceExhausted:
		return ErrOverloaded
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	}
	return nil
}

// leaderHint returns the leader's gRPC address from a NOT_LEADER refusal,
// or "" when err is no such refusal or the server does not know the leader.
func (e *Error) leaderHint() string {
	if e.Code != codes.Unavailable || e.Reason != reasonNotLeader {
		return ""
	}
	return e.Metadata[metaLeaderAddr]
}

// retryable reports whether another attempt of the same call, with the same
// request ID, may succeed.
func (e *Error) retryable() bool {
	switch e.Code {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		return true
	}
	return false
}

// outcomeUnknown reports whether the attempt that failed with e may have
// been applied all the same: it timed out, or its connection or the store
// behind a front door failed after it was sent. A retry of it must say so
// to a front door (FrontDoorClaimRequest.retry), whose caches cannot know
// the first answer to its request ID.
func (e *Error) outcomeUnknown() bool {
	switch e.Code {
	case codes.DeadlineExceeded:
		return true
	case codes.Unavailable:
		return e.Reason != reasonShuttingDown && e.Reason != reasonNotLeader
	}
	return false
}

// droppedError is the error of a call the client dropped itself.
func droppedError(fraction float64) *Error {
	msg := fmt.Sprintf("the front doors asked clients to drop %.0f%% of calls (degradation level 3); nothing was sent", fraction*100)
	st := status.New(codes.ResourceExhausted, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reasonClientDropped, Domain: errorDomain}); err == nil {
		st = withInfo
	}
	return &Error{Code: codes.ResourceExhausted, Reason: reasonClientDropped, Message: msg, status: st}
}

// RetryAfter returns the delay the server asked for before another try
// (google.rpc.RetryInfo): after a rate limit, or until the user's entry
// wave opens (ErrNotEligible). It is 0 when the server gave none.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// Reason returns the reason the server gave for err (google.rpc.ErrorInfo,
// or a refused claim's outcome), such as "SOLD_OUT", or "" if it gave none.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// IsRetryable reports whether retrying the same logical call, with the same
// request ID, may succeed: the cluster was unavailable, overloaded, or the
// call timed out. Business refusals and bad requests are never retryable.
func IsRetryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.retryable()
	}
	return errors.Is(err, context.DeadlineExceeded)
}
