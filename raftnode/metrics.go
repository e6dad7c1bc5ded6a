package raftnode

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics publishes raft and state-machine gauges, read when scraped.
func (n *Node) RegisterMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, read func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "flashd", Subsystem: "raft", Name: name, Help: help,
			ConstLabels: prometheus.Labels{"node": n.cfg.ID, "region": n.cfg.Region},
		}, read)
	}
	collectors := []prometheus.Collector{
		gauge("is_leader", "1 when this node is the leader.", func() float64 { return boolFloat(n.raft.State() == raft.Leader) }),
		gauge("term", "Current raft term.", func() float64 { return float64(n.currentTerm()) }),
		gauge("last_log_index", "Index of the last log entry.", func() float64 { return float64(n.raft.LastIndex()) }),
		gauge("commit_index", "Commit index.", func() float64 { return float64(n.raft.CommitIndex()) }),
		gauge("applied_index", "Index the state machine has applied.", func() float64 { return float64(n.fsm.AppliedIndex()) }),
		gauge("last_contact_seconds", "Seconds since the leader was last heard from (0 on the leader).", n.lastContactSeconds),
		gauge("claims", "Claim records held by the state machine.", func() float64 { return float64(n.fsm.Stats().Claims) }),
		gauge("idempotency_records", "Idempotency records held.", func() float64 { return float64(n.fsm.Stats().IdempotencyRecords) }),
		gauge("bolt_freelist_pages", "Free pages in the bbolt log (DESIGN.md section 8: watch for growth).",
			func() float64 { return float64(n.logStore.Stats().FreePageN) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) lastContactSeconds() float64 {
	if n.raft.State() == raft.Leader {
		return 0
	}
	last := n.raft.LastContact()
	if last.IsZero() {
		return -1
	}
	return time.Since(last).Seconds()
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
