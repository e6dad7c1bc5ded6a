package frontdoor

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// readTimeout bounds a read the front door forwards to the store.
const readTimeout = 3 * time.Second

// Server is the flashd.v1.FrontDoor gRPC service of a Door.
type Server struct {
	pb.UnimplementedFrontDoorServer
	door *Door
}

var _ pb.FrontDoorServer = (*Server)(nil)

// NewServer returns the gRPC service of d.
func NewServer(d *Door) *Server { return &Server{door: d} }

// Claim runs the funnel. At degradation level 3 the response, refusals
// included, carries the drop fraction for the client library.
func (s *Server) Claim(ctx context.Context, req *pb.FrontDoorClaimRequest) (*pb.FrontDoorClaimResponse, error) {
	s.door.setDropHeader(ctx)
	return s.door.Claim(ctx, req)
}

// ClaimMany runs each of many claims through the funnel.
func (s *Server) ClaimMany(ctx context.Context, req *pb.ClaimManyRequest) (*pb.ClaimManyResponse, error) {
	s.door.setDropHeader(ctx)
	return s.door.ClaimMany(ctx, req)
}

// DrawMany runs each of many card draws through the funnel.
func (s *Server) DrawMany(ctx context.Context, req *pb.DrawManyRequest) (*pb.DrawManyResponse, error) {
	s.door.setDropHeader(ctx)
	return s.door.DrawMany(ctx, req)
}

// GetItem answers the public view of an item.
func (s *Server) GetItem(ctx context.Context, req *pb.PublicItemRequest) (*pb.PublicItem, error) {
	s.door.setDropHeader(ctx)
	return s.door.GetItem(ctx, req)
}

// ListMyClaims lists the calling user's claims.
func (s *Server) ListMyClaims(ctx context.Context, req *pb.ListMyClaimsRequest) (*pb.ListMyClaimsResponse, error) {
	s.door.setDropHeader(ctx)
	return s.door.ListMyClaims(ctx, req)
}

func (d *Door) setDropHeader(ctx context.Context) {
	if md := d.funnel.Load().dropHeader; md != nil {
		_ = grpc.SetHeader(ctx, md) // fails only outside a gRPC call (tests)
	}
}

// GetItem answers from the catalog; while the catalog is out of step with
// the store, an item it does not know is read from the store (stale read).
// It needs no credentials, but counts against the caller's IP.
func (d *Door) GetItem(ctx context.Context, req *pb.PublicItemRequest) (*pb.PublicItem, error) {
	const method = "GetItem"
	now := d.cfg.Now()
	for _, f := range []struct{ what, id string }{{"campaign id", req.GetCampaignId()}, {"item id", req.GetItemId()}} {
		if err := pb.ValidateID(f.what, f.id); err != nil {
			d.m.reads.WithLabelValues(method, "invalid_argument").Inc()
			return nil, invalidArgument(err)
		}
	}
	f := d.funnel.Load()
	if r := f.cfg.PerIPRate; r > 0 {
		if c := d.callerOf(ctx); c.hasIP && !d.ips.allow(c.ip, r, now) {
			d.m.reads.WithLabelValues(method, "ip_limited").Inc()
			return nil, f.errIPLimited
		}
	}
	out := &pb.PublicItem{CampaignId: req.GetCampaignId(), ItemId: req.GetItemId()}
	if ce := d.catalog.campaign(req.GetCampaignId()); ce != nil {
		if info := ce.info.Load(); info != nil {
			out.CampaignState = info.state
			out.CampaignStart = nanoToPB(info.start)
			out.CampaignEnd = nanoToPB(info.end)
		}
	}
	if it := d.catalog.item(req.GetCampaignId(), req.GetItemId()); it != nil {
		out.SoldOut = it.soldOut.Load()
		out.RemainingPercent = it.remainingPercent()
		out.PerUserLimit = it.perUserLimit.Load()
		out.Index = it.index.Load()
		d.m.reads.WithLabelValues(method, "ok").Inc()
		return out, nil
	}
	if d.catalog.synced.Load() {
		d.m.reads.WithLabelValues(method, "not_found").Inc()
		return nil, errItemNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := d.store.GetItem(ctx, &pb.GetItemRequest{
		CampaignId: req.GetCampaignId(), ItemId: req.GetItemId(), Consistency: pb.Consistency_CONSISTENCY_STALE,
	})
	if err != nil {
		d.m.reads.WithLabelValues(method, "store_error").Inc()
		return nil, readError(err)
	}
	it := resp.GetItem()
	out.SoldOut = it.GetAvailable() == 0
	out.PerUserLimit = it.GetPerUserLimit()
	out.Index = resp.GetIndex()
	if total := it.GetTotal(); total > 0 && it.GetAvailable() > 0 {
		out.RemainingPercent = uint32((min(it.GetAvailable(), total)*10+total-1)/total) * 10
	}
	d.m.reads.WithLabelValues(method, "store").Inc()
	return out, nil
}

// ListMyClaims lists the caller's claims from the store (a linearizable
// read, so a claim just granted is in it).
func (d *Door) ListMyClaims(ctx context.Context, req *pb.ListMyClaimsRequest) (*pb.ListMyClaimsResponse, error) {
	const method = "ListMyClaims"
	now := d.cfg.Now()
	c := d.callerOf(ctx)
	user, err := d.auth.authenticate(&c, now)
	if err != nil {
		d.m.reads.WithLabelValues(method, "unauthenticated").Inc()
		return nil, err
	}
	if id := req.GetCampaignId(); id != "" {
		if err := pb.ValidateID("campaign id", id); err != nil {
			d.m.reads.WithLabelValues(method, "invalid_argument").Inc()
			return nil, invalidArgument(err)
		}
	}
	f := d.funnel.Load()
	if !d.users.allow(user, f.cfg.PerUserRate, now) {
		d.m.reads.WithLabelValues(method, "user_limited").Inc()
		return nil, f.errUserLimited
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := d.store.ListClaims(ctx, &pb.ListClaimsRequest{UserId: user, CampaignId: req.GetCampaignId()})
	if err != nil {
		d.m.reads.WithLabelValues(method, "store_error").Inc()
		return nil, readError(err)
	}
	d.m.reads.WithLabelValues(method, "ok").Inc()
	return &pb.ListMyClaimsResponse{Claims: resp.GetClaims()}, nil
}

// readError turns a store read's error into the caller's status, without
// the store's internals (addresses in leader hints).
func readError(err error) error {
	switch code := status.Code(err); code {
	case codes.NotFound, codes.InvalidArgument:
		return status.Error(code, status.Convert(err).Message())
	case codes.Canceled, codes.DeadlineExceeded:
		return status.Error(code, "store read did not finish in time")
	case codes.ResourceExhausted:
		return errStoreOverloaded
	}
	return errStoreDown
}

func nanoToPB(ns int64) *timestamppb.Timestamp {
	if ns == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, ns))
}
