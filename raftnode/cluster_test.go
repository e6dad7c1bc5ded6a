package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/fsm/fsmpb"
)

// testCluster is n store nodes on raft's in-memory transport, with real
// bbolt files, so partitions can be cut and healed exactly.
type testCluster struct {
	t          *testing.T
	nodes      []*Node
	transports []*raft.InmemTransport
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	for i := 0; i < n; i++ {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("node%d", i)))
		c.transports = append(c.transports, tr)
	}
	c.connectAll()
	for i := 0; i < n; i++ {
		node, err := Open(Config{
			ID: fmt.Sprintf("n%d", i), Region: fmt.Sprintf("r%d", i), DataDir: t.TempDir(),
			GRPCAddr: fmt.Sprintf("grpc-n%d", i), Transport: c.transports[i], Bootstrap: i == 0,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RaftLog: io.Discard,
			FSM:              fsm.Config{CheckInvariants: true},
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("open node %d: %v", i, err)
		}
		c.nodes = append(c.nodes, node)
	}
	t.Cleanup(c.close)
	// Each joins through whoever leads: on a loaded machine leadership may
	// move while the cluster forms, and a join asked of a node that lost it
	// is asked again of the next leader (a join of a member already there
	// changes nothing).
	deadline := time.Now().Add(30 * time.Second)
	for i, node := range c.nodes[1:] {
		for {
			leader := c.waitLeader()
			if leader == node {
				break // a leader is a voter already
			}
			err := leader.Join(context.Background(), NodeInfo{ID: node.ID(), RaftAddr: string(c.transports[i+1].LocalAddr()), Region: node.Region()})
			if err == nil {
				break
			}
			if !errors.Is(err, ErrNotLeader) || time.Now().After(deadline) {
				t.Fatalf("join %s: %v", node.ID(), err)
			}
		}
	}
	return c
}

func (c *testCluster) close() {
	for _, n := range c.nodes {
		n.Close()
	}
}

func (c *testCluster) connectAll() {
	for i, a := range c.transports {
		for j, b := range c.transports {
			if i != j {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
}

// isolate cuts node i off from every other node, both ways.
func (c *testCluster) isolate(i int) {
	for j, other := range c.transports {
		if j != i {
			c.transports[i].Disconnect(other.LocalAddr())
			other.Disconnect(c.transports[i].LocalAddr())
		}
	}
}

func (c *testCluster) waitLeader() *Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.IsLeader() && n.readyTerm.Load() == n.currentTerm() {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return nil
}

// waitEveryoneKnows waits until every node names leader as the leader.
func (c *testCluster) waitEveryoneKnows(leader *Node) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		known := 0
		for _, n := range c.nodes {
			if _, id := n.Raft().LeaderWithID(); string(id) == leader.ID() {
				known++
			}
		}
		if known == len(c.nodes) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("not every node learned leader %s within 10s", leader.ID())
}

// waitConverged waits until every node has applied the same index.
func (c *testCluster) waitConverged() {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		last := c.nodes[0].Raft().LastIndex()
		same := true
		for _, n := range c.nodes {
			if n.FSM().AppliedIndex() != last || n.Raft().LastIndex() != last {
				same = false
			}
		}
		if same {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("nodes did not converge within 15s")
}

func (c *testCluster) propose(ctx context.Context, cmd *fsmpb.Command) (*fsm.Result, error) {
	for {
		for _, n := range c.nodes {
			if !n.IsLeader() {
				continue
			}
			res, _, err := n.Propose(ctx, cmd)
			if err == nil {
				return res, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func setupSale(t *testing.T, c *testCluster, stock uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmds := []*fsmpb.Command{
		{Type: fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN, CreateCampaign: &fsmpb.CreateCampaign{
			CampaignId: "spring", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: "Spring", PerUserLimit: 1}},
		{Type: fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM, AddItem: &fsmpb.AddItem{CampaignId: "spring", ItemId: "lantern", Stock: stock}},
		{Type: fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN, UpdateCampaign: &fsmpb.UpdateCampaign{
			CampaignId: "spring", State: fsmpb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()}},
	}
	for _, cmd := range cmds {
		res, err := c.propose(ctx, cmd)
		if err != nil || res.Outcomes[0].Reason != fsm.ReasonOK {
			t.Fatalf("setup %v: %v %+v", cmd.Type, err, res)
		}
	}
}

// claimer sends batches of claims from new users, retrying a batch whose
// outcome it did not learn with the same request IDs, and records every
// acknowledged claim.
type claimer struct {
	mu    sync.Mutex
	acked map[string]fsm.Claim // request ID -> granted claim
}

func (cl *claimer) run(ctx context.Context, c *testCluster, worker, batches, perBatch int) {
	for b := 0; b < batches && ctx.Err() == nil; b++ {
		batch := &fsmpb.ClaimBatch{}
		for k := 0; k < perBatch; k++ {
			user := fmt.Sprintf("w%d-b%d-u%d", worker, b, k)
			batch.Claims = append(batch.Claims, &fsmpb.ClaimRequest{
				RequestId: "req-" + user, CampaignId: "spring", ItemId: "lantern", UserId: user, Quantity: 1})
		}
		res, err := c.propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH, ClaimBatch: batch})
		if err != nil {
			return
		}
		cl.mu.Lock()
		for k, o := range res.Outcomes {
			if o.Reason == fsm.ReasonOK {
				cl.acked[batch.Claims[k].RequestId] = o.Claim
			}
		}
		cl.mu.Unlock()
	}
}

func TestPartitionedLeaderLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-second cluster test")
	}
	c := newTestCluster(t, 3)
	const stock = 300
	setupSale(t, c, stock)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := &claimer{acked: map[string]fsm.Claim{}}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); cl.run(ctx, c, w, 40, 4) }()
	}
	time.Sleep(150 * time.Millisecond)
	old := c.waitLeader()
	oldIndex := indexOf(c, old)
	c.isolate(oldIndex)
	newLeader := waitOtherLeader(t, c, old)
	t.Logf("partitioned leader %s; new leader %s", old.ID(), newLeader.ID())
	time.Sleep(300 * time.Millisecond)
	c.connectAll()
	wg.Wait()

	c.waitConverged()
	assertSameDigests(t, c)
	final := c.nodes[0].FSM()
	item, _ := final.Item("spring", "lantern")
	if item.Reserved+item.Sold+item.Available != stock || item.Reserved > stock {
		t.Fatalf("oversold: %+v", item)
	}
	if int(item.Reserved) != len(cl.acked) {
		t.Fatalf("%d claims acknowledged but %d reserved", len(cl.acked), item.Reserved)
	}
	for reqID, want := range cl.acked {
		got, ok := final.Claim(want.ID)
		if !ok || got.RequestID != reqID || got.UserID != want.UserID {
			t.Fatalf("acknowledged claim %d (%s) missing or changed: %+v", want.ID, reqID, got)
		}
	}
	if len(cl.acked) == 0 {
		t.Fatal("no claim was acknowledged: the test exercised nothing")
	}
}

func indexOf(c *testCluster, n *Node) int {
	for i, m := range c.nodes {
		if m == n {
			return i
		}
	}
	return -1
}

func waitOtherLeader(t *testing.T, c *testCluster, old *Node) *Node {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n != old && n.IsLeader() {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no new leader after partition")
	return nil
}

func assertSameDigests(t *testing.T, c *testCluster) {
	t.Helper()
	want, wantIdx := c.nodes[0].FSM().Digest()
	for _, n := range c.nodes[1:] {
		got, idx := n.FSM().Digest()
		if got != want || idx != wantIdx {
			t.Fatalf("digest of %s = %s@%d, of %s = %s@%d", n.ID(), got, idx, c.nodes[0].ID(), want, wantIdx)
		}
	}
	for _, n := range c.nodes {
		if err := n.FSM().CheckInvariants(); err != nil {
			t.Fatalf("%s: %v", n.ID(), err)
		}
	}
}

// TestLinearizableReadRefusedOnFollower: the leader serves a linearizable
// read, and a follower refuses it naming the leader. A round in which the
// term changed (an election on a loaded machine) proves nothing and is run
// again.
func TestLinearizableReadRefusedOnFollower(t *testing.T) {
	c := newTestCluster(t, 3)
	for deadline := time.Now().Add(time.Minute); ; {
		leader := c.waitLeader()
		c.waitEveryoneKnows(leader)
		term := leader.currentTerm()
		var failures []string
		for _, n := range c.nodes {
			err := n.LinearizableRead(context.Background())
			var nl *NotLeaderError
			switch {
			case n == leader && err != nil:
				failures = append(failures, fmt.Sprintf("leader read: %v", err))
			case n != leader && (!errors.As(err, &nl) || nl.LeaderID != leader.ID()):
				failures = append(failures, fmt.Sprintf("follower %s read: got %v, want NOT_LEADER naming %s", n.ID(), err, leader.ID()))
			}
		}
		stable := leader.IsLeader() && leader.currentTerm() == term
		if stable && len(failures) > 0 {
			t.Fatal(failures)
		}
		if stable {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leadership never held still for one round of reads: %v", failures)
		}
	}
}

// TestTransferLeadershipToRegion: a transfer to a region picks that
// region's voter (every node here has a region of its own: checked on
// every attempt) and hands it leadership. Raft gives the target one
// election timeout to win; on a loaded machine it may not
// (ErrTransferFailed), or another election may follow at once and another
// node win it (a third node whose election timer ran out while starved
// cannot be told from a transfer gone astray): such an attempt is made
// again, from whoever leads, until one hands over.
func TestTransferLeadershipToRegion(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for attempt := 1; ; attempt++ {
		leader := c.waitLeader()
		target := c.nodes[(indexOf(c, leader)+1)%len(c.nodes)]
		// Regions are registered through Join; wait until the target's is known.
		for {
			m, err := leader.transferTarget("", target.Region())
			if err == nil {
				if m.ID != target.ID() {
					t.Fatalf("region %s: transfer target %s, want %s", target.Region(), m.ID, target.ID())
				}
				break
			}
			if ctx.Err() != nil {
				t.Fatal("target region never registered")
			}
			time.Sleep(20 * time.Millisecond)
		}
		id, err := leader.TransferLeadership(ctx, "", target.Region())
		switch {
		case errors.Is(err, ErrTransferFailed), errors.Is(err, ErrNotLeader):
			t.Logf("attempt %d: %v", attempt, err)
		case err != nil:
			t.Fatalf("transfer: %v", err)
		case id == target.ID():
			return
		default:
			t.Logf("attempt %d: %s leads after the transfer to %s", attempt, id, target.ID())
		}
		if ctx.Err() != nil {
			t.Fatalf("no transfer to %s took in %d attempts", target.Region(), attempt)
		}
	}
}
