package raftnode

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/flashd/flashd/fsm/fsmpb"
)

const (
	leaderPollInterval = 100 * time.Millisecond
	barrierTimeout     = 10 * time.Second
)

// observeLeadership runs on every node. When this node becomes leader (or
// is leader in a new term) it commits a barrier, which proves its commit
// index covers everything earlier leaders committed, then marks itself ready
// for linearizable reads and makes sure its own registration is current.
func (n *Node) observeLeadership() {
	defer n.wg.Done()
	tick := time.NewTicker(leaderPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		if n.raft.State() != raft.Leader {
			continue
		}
		term := n.currentTerm()
		if n.readyTerm.Load() == term {
			continue
		}
		if err := n.raft.Barrier(barrierTimeout).Error(); err != nil {
			n.log.Warn("leader barrier failed", "term", term, "err", err)
			continue
		}
		n.readyTerm.Store(term)
		n.log.Info("leader ready", "term", term)
		n.registerSelf()
	}
}

// registerSelf records this node's region and addresses in the replicated
// node registry when they are missing or changed.
func (n *Node) registerSelf() {
	for _, m := range n.fsm.Nodes() {
		if m.ID == n.cfg.ID && m.Region == n.cfg.Region && m.GRPCAddr == n.cfg.GRPCAddr && m.HTTPAddr == n.cfg.HTTPAddr {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), barrierTimeout)
	defer cancel()
	err := n.RegisterNode(ctx, NodeInfo{ID: n.cfg.ID, Region: n.cfg.Region, GRPCAddr: n.cfg.GRPCAddr, HTTPAddr: n.cfg.HTTPAddr})
	if err != nil {
		n.log.Warn("register self", "err", err)
	}
}

// proposeExpiries lets the leader release overdue reservations: once a
// second, if the oldest reservation's deadline has passed, it proposes one
// Expire command (DESIGN.md section 4).
func (n *Node) proposeExpiries() {
	defer n.wg.Done()
	tick := time.NewTicker(expiryInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		if !n.IsLeader() || !n.hasOverdueReservation(time.Now()) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), expiryProposeWait)
		_, _, err := n.Propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE, Expire: &fsmpb.Expire{}})
		cancel()
		if err != nil {
			n.log.Warn("propose expiry", "err", err)
		}
	}
}

func (n *Node) hasOverdueReservation(now time.Time) bool {
	oldest := n.fsm.ReservedClaims(1)
	return len(oldest) == 1 && !oldest[0].Deadline.IsZero() && oldest[0].Deadline.Before(now)
}
