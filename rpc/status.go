package rpc

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flashd/flashd/raftnode"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// peerStatusTimeout bounds how long ClusterStatus waits for one member.
const peerStatusTimeout = 3 * time.Second

// stateLeader is NodeStatusResponse.state of a node that leads.
const stateLeader = "Leader"

// NodeStatus is this node's own view.
func (s *AdminServer) NodeStatus(context.Context, *pb.NodeStatusRequest) (*pb.NodeStatusResponse, error) {
	return nodeStatusToPB(s.node.Status()), nil
}

func nodeStatusToPB(st raftnode.Status) *pb.NodeStatusResponse {
	out := &pb.NodeStatusResponse{
		Id: st.ID, Region: st.Region, State: st.State, Term: st.Term, LastLogIndex: st.LastLogIndex,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, Digest: st.Digest, DigestIndex: st.DigestIndex,
		Claims: uint64(st.Claims), LeaderId: st.LeaderID, Uptime: durationpb.New(st.Uptime),
	}
	if !st.LastContact.IsZero() {
		out.LastContact = timestamppb.New(st.LastContact)
	}
	return out
}

// ClusterStatus lists every member with its own view, asked in parallel.
func (s *AdminServer) ClusterStatus(ctx context.Context, _ *pb.ClusterStatusRequest) (*pb.ClusterStatusResponse, error) {
	members, err := s.node.Members()
	if err != nil {
		return nil, nodeError(s.node, err)
	}
	leaderID, leaderMeta := s.node.Leader()
	out := &pb.ClusterStatusResponse{FrontDoorConfig: configToPB(s.node.FSM().FrontDoorConfig())}
	out.Members = make([]*pb.Member, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		pm := &pb.Member{Id: m.ID, Region: m.Region, RaftAddr: m.RaftAddr, GrpcAddr: m.GRPCAddr, Voter: m.Voter}
		out.Members[i] = pm
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.fillMemberStatus(ctx, pm)
		}()
	}
	wg.Wait()
	out.LeaderId, out.LeaderRegion, out.LeaderGrpcAddr = leaderID, leaderMeta.Region, leaderMeta.GRPCAddr
	if m := reportedLeader(out.Members); m != nil {
		out.LeaderId, out.LeaderRegion, out.LeaderGrpcAddr = m.GetId(), m.GetRegion(), m.GetGrpcAddr()
	}
	for _, m := range out.Members {
		m.Leader = m.GetId() == out.GetLeaderId()
	}
	out.FrontDoors = s.liveFrontDoors(ctx, out.GetLeaderGrpcAddr())
	return out, nil
}

// reportedLeader is the member that reports itself leading at a term no
// other member's report exceeds, or nil. Its own word beats this node's
// view, which lags (a follower that has not heard of a new leader yet) or
// is empty (a node removed from the cluster keeps serving and knows no
// leader): so the leader named above the table is the one in it. A
// deposed leader still reporting an older term is not it.
func reportedLeader(members []*pb.Member) *pb.Member {
	var leader *pb.Member
	var term uint64
	for _, m := range members {
		st := m.GetStatus()
		switch {
		case st == nil:
		case st.GetTerm() > term:
			term, leader = st.GetTerm(), nil
			if st.GetState() == stateLeader {
				leader = m
			}
		case st.GetTerm() == term && st.GetState() == stateLeader:
			leader = m
		}
	}
	return leader
}

// liveFrontDoors is the leader's soft list of front doors: read here when
// this node leads, else asked of the leader (empty if it does not answer).
func (s *AdminServer) liveFrontDoors(ctx context.Context, leaderAddr string) []*pb.FrontDoorPresence {
	if s.node.IsLeader() || leaderAddr == "" {
		return s.frontDoors.live()
	}
	ctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	conn, err := s.peers.conn(leaderAddr)
	if err != nil {
		return nil
	}
	st, err := pb.NewAdminClient(conn).ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		return nil
	}
	return st.GetFrontDoors()
}

func (s *AdminServer) fillMemberStatus(ctx context.Context, m *pb.Member) {
	if m.Id == s.node.ID() {
		m.Status = nodeStatusToPB(s.node.Status())
		return
	}
	if m.GrpcAddr == "" {
		m.Error = "not registered yet"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	st, err := s.peers.nodeStatus(ctx, m.GrpcAddr)
	if err != nil {
		m.Error = status.Convert(err).Code().String() // e.g. Unavailable, DeadlineExceeded
		return
	}
	m.Status = st
}

// peerDialer keeps one lazily-connected client per peer address.
type peerDialer struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (d *peerDialer) nodeStatus(ctx context.Context, addr string) (*pb.NodeStatusResponse, error) {
	conn, err := d.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewAdminClient(conn).NodeStatus(ctx, &pb.NodeStatusRequest{})
}

func (d *peerDialer) conn(addr string) (*grpc.ClientConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	if d.conns == nil {
		d.conns = map[string]*grpc.ClientConn{}
	}
	d.conns[addr] = c
	return c, nil
}

func (d *peerDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}
