package flashdpb

import (
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
)

// NewCallStatus is the CallStatus of a gRPC status error: what a
// ClaimMany or DrawMany outcome carries where a Claim or DrawCard call
// would have returned err.
func NewCallStatus(err error) *CallStatus {
	p := status.Convert(err).Proto()
	return &CallStatus{Code: p.GetCode(), Message: p.GetMessage(), Details: p.GetDetails()}
}

// Err is the status error the unary call would have returned for this
// outcome; nil for a nil CallStatus.
func (s *CallStatus) Err() error {
	if s == nil {
		return nil
	}
	return status.ErrorProto(&spb.Status{Code: s.GetCode(), Message: s.GetMessage(), Details: s.GetDetails()})
}
