package rpc

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Front-door presence is soft state: it lives in the leader's memory only.
const (
	frontDoorTTL    = 3 * time.Second // unseen this long: dead
	frontDoorsMax   = 1024            // bound on tracked front doors
	errTooManyDoors = "too many front doors announced"
)

// frontDoorRegistry is the leader's view of the live front doors.
type frontDoorRegistry struct {
	mu    sync.Mutex
	doors map[string]*pb.FrontDoorPresence
	now   func() time.Time
}

func newFrontDoorRegistry() *frontDoorRegistry {
	return &frontDoorRegistry{doors: map[string]*pb.FrontDoorPresence{}, now: time.Now}
}

// announce records a heartbeat and returns the live set, sorted by ID.
func (r *frontDoorRegistry) announce(p *pb.FrontDoorPresence) ([]*pb.FrontDoorPresence, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.expire(now)
	if _, known := r.doors[p.Id]; !known && len(r.doors) >= frontDoorsMax {
		return nil, false
	}
	p = proto.Clone(p).(*pb.FrontDoorPresence)
	p.LastSeen = timestamppb.New(now)
	r.doors[p.Id] = p
	return r.liveLocked(), true
}

func (r *frontDoorRegistry) live() []*pb.FrontDoorPresence {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(r.now())
	return r.liveLocked()
}

func (r *frontDoorRegistry) expire(now time.Time) {
	for id, d := range r.doors {
		if now.Sub(d.LastSeen.AsTime()) > frontDoorTTL {
			delete(r.doors, id)
		}
	}
}

func (r *frontDoorRegistry) liveLocked() []*pb.FrontDoorPresence {
	out := make([]*pb.FrontDoorPresence, 0, len(r.doors))
	for _, d := range r.doors {
		out = append(out, proto.Clone(d).(*pb.FrontDoorPresence))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// AnnounceFrontDoor records a front door's heartbeat on the leader.
func (s *StoreServer) AnnounceFrontDoor(ctx context.Context, req *pb.AnnounceFrontDoorRequest) (*pb.AnnounceFrontDoorResponse, error) {
	p := req.GetFrontDoor()
	if err := pb.ValidateID("front door id", p.GetId()); err != nil {
		return nil, invalidArgument(err)
	}
	if p.GetWeight() < 0 {
		return nil, invalidArgument(errors.New("front door weight must not be negative"))
	}
	if !s.node.IsLeader() {
		return nil, nodeError(s.node, s.node.NotLeader())
	}
	live, ok := s.frontDoors.announce(p)
	if !ok {
		return nil, withInfo(codes.ResourceExhausted, reasonOverloaded, errTooManyDoors, nil)
	}
	return &pb.AnnounceFrontDoorResponse{
		Live: live, Config: configToPB(s.node.FSM().FrontDoorConfig()), Ttl: durationpb.New(frontDoorTTL),
	}, nil
}
