package rpc

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/raftnode"
)

// errorDomain is the ErrorInfo domain of every flashd reason.
const errorDomain = "flashd"

// ErrorInfo reasons that are not business refusals (those use fsm.Reason's
// names).
const (
	reasonNotLeader      = "NOT_LEADER"
	reasonLeaderNotReady = "LEADER_NOT_READY"
	reasonShuttingDown   = "SHUTTING_DOWN"
	reasonOverloaded     = "OVERLOADED"
	reasonTransferFailed = "TRANSFER_FAILED"
	leaderNotReadyRetry  = 50 * time.Millisecond
)

// reasonCode maps a business refusal to its gRPC code (DESIGN.md section 7).
func reasonCode(r fsm.Reason) codes.Code {
	switch r {
	case fsm.ReasonOK:
		return codes.OK
	case fsm.ReasonCampaignNotFound, fsm.ReasonItemNotFound, fsm.ReasonClaimNotFound:
		return codes.NotFound
	case fsm.ReasonAlreadyExists:
		return codes.AlreadyExists
	case fsm.ReasonInvalidArgument, fsm.ReasonWrongCampaignKind:
		return codes.InvalidArgument
	default:
		return codes.FailedPrecondition
	}
}

// outcomeError turns a refused outcome into a status; nil when granted.
func outcomeError(o fsm.Outcome) error {
	if o.Reason == fsm.ReasonOK {
		return nil
	}
	return withInfo(reasonCode(o.Reason), o.Reason.String(), o.Message, nil)
}

func withInfo(code codes.Code, reason, msg string, meta map[string]string, retry ...*errdetails.RetryInfo) error {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta}}
	for _, r := range retry {
		details = append(details, r)
	}
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

func invalidArgument(err error) error {
	return withInfo(codes.InvalidArgument, fsm.ReasonInvalidArgument.String(), err.Error(), nil)
}

// nodeError maps an error from the raft node to a status. The leader hint
// names the leader's gRPC address from the replicated node registry, so the
// client can go there at once.
func nodeError(node *raftnode.Node, err error) error {
	var notLeader *raftnode.NotLeaderError
	switch {
	case errors.As(err, &notLeader):
		id, meta := node.Leader()
		return withInfo(codes.Unavailable, reasonNotLeader, err.Error(),
			map[string]string{"leader_id": id, "leader_addr": meta.GRPCAddr})
	case errors.Is(err, raftnode.ErrLeaderNotReady):
		return withInfo(codes.Unavailable, reasonLeaderNotReady, err.Error(), nil,
			&errdetails.RetryInfo{RetryDelay: durationpb.New(leaderNotReadyRetry)})
	case errors.Is(err, raftnode.ErrTransferFailed):
		return withInfo(codes.Unavailable, reasonTransferFailed, err.Error(), nil)
	case errors.Is(err, raftnode.ErrShutdown):
		return withInfo(codes.Unavailable, reasonShuttingDown, err.Error(), nil)
	case errors.Is(err, raftnode.ErrNoSuchMember):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, raftnode.ErrBadConfig):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
