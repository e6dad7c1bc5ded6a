package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/fsm/fsmpb"
)

const membershipTimeout = 10 * time.Second

// Membership errors.
var (
	// ErrNoSuchMember: the named node is not in the cluster configuration.
	ErrNoSuchMember = errors.New("no such member")
	// ErrTransferFailed: the target did not take over in time (it may be
	// catching up); leadership stays where it was and the call may be retried.
	ErrTransferFailed = errors.New("leadership transfer failed")
)

// NodeInfo is what a node tells the cluster about itself when it joins.
type NodeInfo struct {
	ID       string
	RaftAddr string
	GRPCAddr string
	HTTPAddr string
	Region   string
	NonVoter bool
}

// Member is one server of the raft configuration with its registered
// metadata.
type Member struct {
	fsm.Node
	RaftAddr string
	Voter    bool
}

// Join adds a node to the cluster (leader only) and records its metadata.
// Joining again with the same ID and address is a no-op, so a joiner may
// retry safely.
func (n *Node) Join(ctx context.Context, info NodeInfo) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	var f raft.IndexFuture
	id, addr := raft.ServerID(info.ID), raft.ServerAddress(info.RaftAddr)
	if info.NonVoter {
		f = n.raft.AddNonvoter(id, addr, 0, membershipTimeout)
	} else {
		f = n.raft.AddVoter(id, addr, 0, membershipTimeout)
	}
	if err := f.Error(); err != nil {
		return n.applyError(err)
	}
	return n.RegisterNode(ctx, info)
}

// RegisterNode records (or updates) a member's region and addresses.
func (n *Node) RegisterNode(ctx context.Context, info NodeInfo) error {
	_, _, err := n.Propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_REGISTER_NODE,
		RegisterNode: &fsmpb.RegisterNode{
			NodeId: info.ID, Region: info.Region, GrpcAddr: info.GRPCAddr, HttpAddr: info.HTTPAddr,
		},
	})
	return err
}

// Remove takes a node out of the cluster and its registry entry.
func (n *Node) Remove(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	if _, ok := n.member(id); !ok {
		return fmt.Errorf("%w: %q", ErrNoSuchMember, id)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return n.applyError(err)
	}
	_, _, err := n.Propose(ctx, &fsmpb.Command{
		Type:         fsmpb.CommandType_COMMAND_TYPE_REGISTER_NODE,
		RegisterNode: &fsmpb.RegisterNode{NodeId: id, Removed: true},
	})
	return err
}

// TransferLeadership hands leadership to toID, to any voter in toRegion, or
// (both empty) to the most up-to-date follower, and returns the new leader.
func (n *Node) TransferLeadership(ctx context.Context, toID, toRegion string) (string, error) {
	if !n.IsLeader() {
		return "", n.notLeader()
	}
	target, err := n.transferTarget(toID, toRegion)
	if err != nil {
		return "", err
	}
	var f raft.Future
	if target == nil {
		f = n.raft.LeadershipTransfer()
	} else {
		f = n.raft.LeadershipTransferToServer(raft.ServerID(target.ID), raft.ServerAddress(target.RaftAddr))
	}
	if err := f.Error(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrTransferFailed, err)
	}
	return n.awaitLeader(ctx, n.cfg.ID)
}

func (n *Node) transferTarget(toID, toRegion string) (*Member, error) {
	if toID == "" && toRegion == "" {
		return nil, nil
	}
	members, err := n.Members()
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m.ID == n.cfg.ID || !m.Voter {
			continue
		}
		if (toID != "" && m.ID == toID) || (toID == "" && m.Region == toRegion) {
			return &m, nil
		}
	}
	return nil, fmt.Errorf("%w: no other voter with id %q / region %q", ErrNoSuchMember, toID, toRegion)
}

// awaitLeader waits until a leader other than notID is known.
func (n *Node) awaitLeader(ctx context.Context, notID string) (string, error) {
	for {
		if _, id := n.raft.LeaderWithID(); id != "" && string(id) != notID {
			return string(id), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(leaderPollInterval):
		}
	}
}

// Members lists the raft configuration joined with the node registry.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	registry := map[string]fsm.Node{}
	for _, m := range n.fsm.Nodes() {
		registry[m.ID] = m
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		meta := registry[string(s.ID)]
		meta.ID = string(s.ID)
		out = append(out, Member{Node: meta, RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

func (n *Node) member(id string) (Member, bool) {
	members, err := n.Members()
	if err != nil {
		return Member{}, false
	}
	for _, m := range members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// Snapshot takes a snapshot now and returns the index it covers.
func (n *Node) Snapshot() (uint64, error) {
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return n.fsm.AppliedIndex(), nil
		}
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	meta, _, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("open snapshot: %w", err)
	}
	return meta.Index, nil
}

// Status is this node's own view of itself and the cluster.
type Status struct {
	ID, Region, State, LeaderID     string
	Term, LastLogIndex, CommitIndex uint64
	AppliedIndex                    uint64
	LastContact                     time.Time // zero on the leader
	Digest                          string    // of the applied state at DigestIndex
	DigestIndex                     uint64
	Claims                          int
	Uptime                          time.Duration
}

// Status reads this node's view. The digest may trail the applied index
// while writes flow (see stateDigest); it says which index it covers.
func (n *Node) Status() Status {
	digest, digestIndex := n.stateDigest()
	_, leader := n.raft.LeaderWithID()
	st := Status{
		ID: n.cfg.ID, Region: n.cfg.Region, State: n.raft.State().String(), LeaderID: string(leader),
		Term: n.currentTerm(), LastLogIndex: n.raft.LastIndex(), CommitIndex: n.raft.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(), Digest: digest, DigestIndex: digestIndex, Claims: n.fsm.Stats().Claims, Uptime: time.Since(n.started),
	}
	if n.raft.State() != raft.Leader {
		st.LastContact = n.raft.LastContact()
	}
	return st
}
