package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flashd/flashd/cmd/internal/localcluster"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// When chaos strikes, and for how long.
const (
	chaosStockShare  = 0.25 // kill the leader once this share of the stock is given out...
	chaosTimeShare   = 0.4  // ...or this share of the duration has passed
	chaosDowntimeMin = 3 * time.Second
	catchUpTimeout   = 30 * time.Second
)

// chaosRun kills the store leader with SIGKILL in the middle of the event
// and restarts it later with the same flags: it must come back from its own
// files, catch up, and nothing acknowledged may be lost.
type chaosRun struct {
	s *liveRun
}

// run waits for the moment, kills the leader, waits out the downtime
// (while crowdCtx lives) and restarts it. ctx is the whole demo's.
func (c *chaosRun) run(crowdCtx, ctx context.Context) {
	s := c.s
	trigger := time.After(time.Until(s.open.Add(time.Duration(chaosTimeShare * float64(s.cfg.Duration)))))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-crowdCtx.Done():
			return
		case <-trigger:
			break wait
		case <-tick.C:
			if s.work.progress().given >= chaosStockShare {
				break wait
			}
		}
	}
	victim, err := c.kill(crowdCtx)
	if err != nil {
		s.event("chaos: " + err.Error())
		return
	}
	downtime := max(chaosDowntimeMin, s.cfg.Duration/6)
	select {
	case <-crowdCtx.Done(): // the crowd stopped first: restart now, for the check
	case <-time.After(downtime):
	}
	if ctx.Err() != nil {
		return
	}
	if err := victim.Start(s.cl.Binary); err != nil {
		s.event("chaos: restart failed: " + err.Error())
		return
	}
	s.chaosEvent(fmt.Sprintf("chaos: %s restarted (same flags, its own data directory)", victim.Name))
	c.watchCatchUp(ctx, victim)
}

// kill finds the leader and kills its process.
func (c *chaosRun) kill(ctx context.Context) (*localcluster.Process, error) {
	s := c.s
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := s.cl.Store.ClusterStatus(rctx, &pb.ClusterStatusRequest{})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("no cluster status, nothing killed: %v", err)
	}
	victim := s.cl.StoreByID(st.GetLeaderId())
	if victim == nil {
		return nil, fmt.Errorf("no leader to kill (leader %q)", st.GetLeaderId())
	}
	pid := victim.PID()
	victim.Kill()
	s.mu.Lock()
	s.killedAt = time.Now()
	s.mu.Unlock()
	var done []string
	for _, t := range s.work.progress().counts {
		done = append(done, count(t.n)+" "+t.noun)
	}
	s.chaosEvent(fmt.Sprintf("chaos: kill -9 store leader %s (%s), pid %d, with %s", victim.Name, victim.Region, pid, strings.Join(done, ", ")))
	return victim, nil
}

// watchCatchUp reports when the restarted node has applied what the
// leader has committed.
func (c *chaosRun) watchCatchUp(ctx context.Context, victim *localcluster.Process) {
	s := c.s
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	for ctx.Err() == nil {
		st, err := s.cl.Store.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err == nil {
			var leaderCommit, applied uint64
			answered := false
			for _, m := range st.GetMembers() {
				if m.GetLeader() {
					leaderCommit = m.GetStatus().GetCommitIndex()
				}
				if m.GetId() == victim.Name && m.GetStatus() != nil {
					applied, answered = m.GetStatus().GetAppliedIndex(), true
				}
			}
			if answered && leaderCommit > 0 && applied >= leaderCommit {
				s.chaosEvent(fmt.Sprintf("chaos: %s caught up: applied index %d, the leader's commit index", victim.Name, applied))
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// chaosEvent is an event the summary repeats.
func (s *liveRun) chaosEvent(text string) {
	s.event(text)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chaosNotes = append(s.chaosNotes, fmt.Sprintf("%5.1fs  %s", time.Since(s.open).Seconds(), text))
}
