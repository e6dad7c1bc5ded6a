package flashdpb

import (
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
)

// NewClaimStatus is the ClaimStatus of a gRPC status error: what a
// ClaimMany outcome carries where a Claim call would have returned err.
func NewClaimStatus(err error) *ClaimStatus {
	p := status.Convert(err).Proto()
	return &ClaimStatus{Code: p.GetCode(), Message: p.GetMessage(), Details: p.GetDetails()}
}

// Err is the status error a Claim call would have returned for this
// outcome; nil for a nil ClaimStatus.
func (s *ClaimStatus) Err() error {
	if s == nil {
		return nil
	}
	return status.ErrorProto(&spb.Status{Code: s.GetCode(), Message: s.GetMessage(), Details: s.GetDetails()})
}
