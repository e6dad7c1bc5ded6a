package remote

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/flashd/flashd/deploy/chaos/runner"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

const (
	// transferAttempts: a transfer fails when its target lags; try again.
	transferAttempts = 3
	// leaderWait: how long a fault aimed at the leader waits for one.
	leaderWait = 10 * time.Second
)

// Inject makes a fault with the chaos scripts; "leader" is resolved here,
// so the result names what was hit.
func (c *Cluster) Inject(ctx context.Context, f runner.Fault) (string, error) {
	switch f.Kind {
	case runner.FaultPartition:
		args := []string{f.Partition}
		var resolved string
		switch f.Partition {
		case runner.PartitionIsolate:
			region := f.Groups[0][0]
			if region == runner.Leader {
				_, leaderRegion, err := c.leader(ctx)
				if err != nil {
					return "", err
				}
				region, resolved = leaderRegion, leaderRegion
			}
			args = append(args, region)
		case runner.PartitionSplit:
			args = append(args, strings.Join(f.Groups[0], ",")+"/"+strings.Join(f.Groups[1], ","))
		case runner.PartitionOneway:
			args = append(args, f.Groups[0][0], f.Groups[1][0])
		}
		return resolved, c.script(ctx, "partition", args...)
	case runner.FaultKill, runner.FaultPause, runner.FaultRestart:
		node := f.Node
		if node == runner.Leader {
			id, _, err := c.leader(ctx)
			if err != nil {
				return "", err
			}
			node = id
		}
		return node, c.script(ctx, "node", f.Kind, node)
	case runner.FaultLeaderTransfer:
		var err error
		for i := 0; i < transferAttempts && ctx.Err() == nil; i++ {
			var res *pb.TransferLeadershipResponse
			if res, err = c.store.TransferLeadership(ctx, &pb.TransferLeadershipRequest{}); err == nil {
				return res.GetLeaderId(), nil
			}
		}
		return "", fmt.Errorf("leadership transfer: %w", err)
	}
	return "", fmt.Errorf("unknown fault %q", f.Kind)
}

// Heal ends a fault with a duration.
func (c *Cluster) Heal(ctx context.Context, f runner.Fault, target string) error {
	switch f.Kind {
	case runner.FaultPartition:
		return c.script(ctx, "partition", "heal")
	case runner.FaultKill:
		return c.script(ctx, "node", "restart", target)
	case runner.FaultPause:
		return c.script(ctx, "node", "resume", target)
	}
	return nil
}

// HealAll removes every cut and brings every container back.
func (c *Cluster) HealAll(ctx context.Context) error {
	return errors.Join(c.script(ctx, "partition", "heal"), c.script(ctx, "node", "heal"))
}

// leader finds the leader, waiting out an election (up to leaderWait).
func (c *Cluster) leader(ctx context.Context) (id, region string, err error) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	for {
		st, err := c.store.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		switch {
		case err != nil:
			return "", "", fmt.Errorf("find the leader: %w", err)
		case st.GetLeaderId() != "":
			return st.GetLeaderId(), st.GetLeaderRegion(), nil
		}
		select {
		case <-ctx.Done():
			return "", "", errors.New("find the leader: none known")
		case <-time.After(pollInterval):
		}
	}
}

// script runs one of the chaos scripts.
func (c *Cluster) script(ctx context.Context, name string, args ...string) error {
	if c.scripts == "" {
		return errors.New("no chaos scripts folder given")
	}
	out, err := exec.CommandContext(ctx, filepath.Join(c.scripts, name), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
