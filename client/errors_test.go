package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashd/flashd/rpc/flashdpb"
)

func TestErrorMatchesReasonAndCode(t *testing.T) {
	err := fmt.Errorf("claim: %w", newError(notLeader("n2", "10.0.0.2:7001")))
	if !errors.Is(err, ErrNotLeader) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("%v should match ErrNotLeader and ErrUnavailable", err)
	}
	if errors.Is(err, ErrSoldOut) || errors.Is(err, nil) {
		t.Errorf("%v matches an unrelated error", err)
	}
	if Reason(err) != "NOT_LEADER" || !IsRetryable(err) {
		t.Errorf("Reason = %q, IsRetryable = %v", Reason(err), IsRetryable(err))
	}
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("status.Code through wrapping = %v", got)
	}
	if got := newError(notLeader("n2", "10.0.0.2:7001")).leaderHint(); got != "10.0.0.2:7001" {
		t.Errorf("leaderHint = %q", got)
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{refusal(codes.FailedPrecondition, "SOLD_OUT", "i1 has none left"), "sold out (SOLD_OUT): i1 has none left"},
		{refusal(codes.NotFound, "CAMPAIGN_NOT_FOUND", "no campaign c9"), "not found (CAMPAIGN_NOT_FOUND): no campaign c9"},
		{status.Error(codes.Unavailable, "connection refused"), "unavailable: connection refused"},
		{status.Error(codes.Internal, "boom"), "internal: boom"},
		{status.Error(codes.DeadlineExceeded, "too slow"), "context deadline exceeded: too slow"},
		{status.Error(codes.Unimplemented, ""), "unimplemented"},
		{status.FromContextError(context.DeadlineExceeded).Err(), "context deadline exceeded"},
	}
	for _, tt := range tests {
		if got := newError(tt.err).Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestDeadlineStatusMatchesContextError(t *testing.T) {
	err := newError(status.Error(codes.DeadlineExceeded, "slow"))
	if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
		t.Errorf("%v: want context.DeadlineExceeded, retryable", err)
	}
	if IsRetryable(context.Canceled) || IsRetryable(errors.New("plain")) {
		t.Error("cancellation and plain errors are not retryable")
	}
}

func TestOutcomeErrorCodes(t *testing.T) {
	tests := []struct {
		reason flashdpb.Reason
		code   codes.Code
		is     error
	}{
		{flashdpb.Reason_REASON_LIMIT_REACHED, codes.FailedPrecondition, ErrLimitReached},
		{flashdpb.Reason_REASON_NOT_ELIGIBLE, codes.FailedPrecondition, ErrNotEligible},
		{flashdpb.Reason_REASON_CAMPAIGN_CLOSED, codes.FailedPrecondition, ErrCampaignClosed},
		{flashdpb.Reason_REASON_ITEM_NOT_FOUND, codes.NotFound, ErrNotFound},
		{flashdpb.Reason_REASON_INVALID_ARGUMENT, codes.InvalidArgument, ErrInvalidArgument},
		{flashdpb.Reason_REASON_REQUEST_ID_REUSED, codes.FailedPrecondition, ErrRequestIDReused},
	}
	for _, tt := range tests {
		err := outcomeError(&flashdpb.ClaimOutcome{Reason: tt.reason, Message: "m"})
		if err.Code != tt.code || !errors.Is(err, tt.is) || status.Code(err) != tt.code {
			t.Errorf("%v: code %v, want %v matching %v", tt.reason, err.Code, tt.code, tt.is)
		}
		if got := Reason(err); "REASON_"+got != tt.reason.String() {
			t.Errorf("Reason = %q for %v", got, tt.reason)
		}
		if IsRetryable(err) {
			t.Errorf("%v is retryable", tt.reason)
		}
	}
}
