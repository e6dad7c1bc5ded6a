package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/flashd/flashd/deploy/chaos/runner"
)

// transferAttempts: a leadership transfer fails when its target is behind,
// or while another is in progress (for up to an election timeout: on a
// loaded machine three attempts back to back all found the one before
// still in progress); it is tried again after transferPause, as an
// operator would.
const (
	transferAttempts = 10
	transferPause    = 2 * electionTimeout
)

// Inject makes a fault. One fault is active at a time (the runner's
// schedules do not overlap), so Heal undoes every cut.
func (c *Cluster) Inject(ctx context.Context, f runner.Fault) (string, error) {
	switch f.Kind {
	case runner.FaultPartition:
		return c.partition(ctx, f)
	case runner.FaultKill, runner.FaultRestart, runner.FaultPause:
		n, err := c.resolveNode(ctx, f.Node)
		if err != nil {
			return "", err
		}
		switch f.Kind {
		case runner.FaultKill:
			c.crash(n)
		case runner.FaultRestart:
			c.crash(n)
			if err := c.open(n, false); err != nil {
				return n.id, err
			}
		case runner.FaultPause:
			n.mu.Lock()
			if n.resumed == nil {
				n.resumed = make(chan struct{})
			}
			n.mu.Unlock()
			c.mu.Lock()
			c.wire()
			c.mu.Unlock()
		}
		return n.id, nil
	case runner.FaultLeaderTransfer:
		var err error
		for i := 0; i < transferAttempts && ctx.Err() == nil; i++ {
			if i > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(transferPause):
				}
			}
			var leader *node
			if leader, err = c.resolveNode(ctx, runner.Leader); err != nil {
				continue
			}
			leader.mu.RLock()
			store := leader.store
			leader.mu.RUnlock()
			if store == nil {
				continue
			}
			var to string
			if to, err = store.TransferLeadership(ctx, "", ""); err == nil {
				return to, nil
			}
		}
		if err == nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("leadership transfer: %w", err)
	}
	return "", fmt.Errorf("unknown fault %q", f.Kind)
}

// partition cuts the links the fault names; it returns the region that
// "leader" resolved to, if any.
func (c *Cluster) partition(ctx context.Context, f runner.Fault) (string, error) {
	groups := slices.Clone(f.Groups)
	var resolved string
	if f.Partition == runner.PartitionIsolate && groups[0][0] == runner.Leader {
		n, err := c.resolveNode(ctx, runner.Leader)
		if err != nil {
			return "", err
		}
		resolved = n.region
		groups = [][]string{{n.region}}
	}
	in := func(n *node, regions []string) bool { return slices.Contains(regions, n.region) }
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			var cut bool
			switch f.Partition {
			case runner.PartitionIsolate:
				cut = in(a, groups[0]) != in(b, groups[0])
			case runner.PartitionSplit:
				cut = (in(a, groups[0]) && in(b, groups[1])) || (in(a, groups[1]) && in(b, groups[0]))
			case runner.PartitionOneway:
				cut = in(a, groups[0]) && in(b, groups[1])
			}
			if cut {
				c.cut[[2]string{a.id, b.id}] = true
			}
		}
	}
	c.wire()
	return resolved, nil
}

// Heal undoes a fault with a duration.
func (c *Cluster) Heal(_ context.Context, f runner.Fault, target string) error {
	switch f.Kind {
	case runner.FaultPartition:
		c.mu.Lock()
		clear(c.cut)
		c.wire()
		c.mu.Unlock()
		return nil
	case runner.FaultKill, runner.FaultPause:
		n, err := c.node(target)
		if err != nil {
			return err
		}
		return c.revive(n)
	}
	return nil
}

// HealAll removes every cut, resumes paused nodes and restarts crashed ones.
func (c *Cluster) HealAll(context.Context) error {
	c.mu.Lock()
	clear(c.cut)
	c.mu.Unlock()
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, c.revive(n))
	}
	c.mu.Lock()
	c.wire()
	c.mu.Unlock()
	return errors.Join(errs...)
}

// revive resumes a paused node, or restarts a crashed one from its files.
func (c *Cluster) revive(n *node) error {
	n.mu.Lock()
	crashed := n.store == nil
	if n.resumed != nil {
		close(n.resumed)
		n.resumed = nil
	}
	n.mu.Unlock()
	if crashed {
		return c.open(n, false)
	}
	c.mu.Lock()
	c.wire()
	c.mu.Unlock()
	return nil
}

// resolveNode finds a node by ID, or the leader, waiting a little for an
// election to end.
func (c *Cluster) resolveNode(ctx context.Context, id string) (*node, error) {
	if id != runner.Leader {
		return c.node(id)
	}
	deadline := time.Now().Add(leaderWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if n := c.leader(); n != nil {
			return n, nil
		}
		time.Sleep(retryPause)
	}
	return nil, errors.New("no leader to hit")
}
