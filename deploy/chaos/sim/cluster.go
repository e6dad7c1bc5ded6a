// Package sim is the fast tier of the chaos suite: real store nodes
// (raftnode, with bbolt files) in one process, on hashicorp/raft's
// in-memory transport, where partitions, crashes with restarts from the
// node's own files, pauses and leader transfers are exact and cheap. The
// workload, the schedule and the checks are deploy/chaos/runner's and
// deploy/chaos/check's: only the cluster differs from a docker run.
//
// What differs from real processes: a crash is raft's shutdown (the bbolt
// files are as a crash leaves them, since every commit is fsync'd, but
// nothing in flight survives); a pause cuts the node off the network and
// holds its clients' calls, but its timers keep running; claims go to the
// leader one per log entry, without a front door. DESIGN.md says more.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/flashd/flashd/deploy/chaos/check"
	"github.com/flashd/flashd/deploy/chaos/runner"
	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/flashd/flashd/raftnode"
)

// Break selects a deliberately broken store, to prove the checks catch it.
type Break int

const (
	// BreakNone: the store as it is.
	BreakNone Break = iota
	// BreakAckBeforeCommit: a claim whose proposal fails on the leader
	// (leadership lost, node shut down, timeout) is acknowledged anyway
	// with the outcome the leader's state predicted, as a store that
	// answers before the entry is committed would.
	BreakAckBeforeCommit
	// BreakSkipUserLimit: the store does not enforce the per-user limit
	// (emulated below the state machine by giving every claim a user of
	// its own, and reading the real user back in the final state).
	BreakSkipUserLimit
)

// Raft timing of the simulated nodes: fast, so a schedule of seconds sees
// several elections.
const (
	heartbeatTimeout  = 100 * time.Millisecond
	electionTimeout   = 100 * time.Millisecond
	snapshotThreshold = 256
	snapshotInterval  = 300 * time.Millisecond
	trailingLogs      = 128
	attemptTimeout    = 300 * time.Millisecond
	retryPause        = 10 * time.Millisecond
	leaderWait        = 5 * time.Second
	userSeparator     = "~" // BreakSkipUserLimit: user~requestID
)

// DefaultTopology is five voters over three regions, 2-2-1, as the
// docker-compose cluster.
func DefaultTopology() runner.Topology {
	return runner.Topology{Regions: []runner.Region{
		{Name: "east", Nodes: []string{"n1", "n2"}},
		{Name: "west", Nodes: []string{"n3", "n4"}},
		{Name: "north", Nodes: []string{"n5"}},
	}}
}

// node is one store node across its incarnations.
type node struct {
	id, region string
	addr       raft.ServerAddress
	dir        string

	mu      sync.RWMutex
	store   *raftnode.Node       // nil while crashed
	tr      *raft.InmemTransport // this incarnation's transport
	down    chan struct{}        // closed when this incarnation crashes
	resumed chan struct{}        // closed on resume; nil when not paused
}

// Cluster is a simulated store cluster. It implements runner.Target and
// runner.Injector.
type Cluster struct {
	brk   Break
	nodes []*node
	log   *slog.Logger

	mu  sync.Mutex         // links: cuts and the wiring of transports
	cut map[[2]string]bool // cut[{a, b}]: a cannot reach b

	hint atomic.Int32 // index of the node believed to lead
}

var (
	_ runner.Target   = (*Cluster)(nil)
	_ runner.Injector = (*Cluster)(nil)
)

// Open starts a cluster with its data under dir and waits until every node
// has joined.
func Open(ctx context.Context, dir string, topo runner.Topology, brk Break) (*Cluster, error) {
	c := &Cluster{brk: brk, cut: map[[2]string]bool{},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, r := range topo.Regions {
		for _, id := range r.Nodes {
			c.nodes = append(c.nodes, &node{id: id, region: r.Name, addr: raft.ServerAddress(id), dir: filepath.Join(dir, id)})
		}
	}
	for i, n := range c.nodes {
		if err := c.open(n, i == 0); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, n := range c.nodes[1:] {
		if err := c.join(ctx, n); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// join adds n to the cluster through whichever node leads (leadership may
// move while the cluster forms), unless it is a member already.
func (c *Cluster) join(ctx context.Context, n *node) error {
	for {
		leader, err := c.waitLeader(ctx)
		if err != nil {
			return fmt.Errorf("join %s: %w", n.id, err)
		}
		members, err := leader.Members()
		if err == nil && slices.ContainsFunc(members, func(m raftnode.Member) bool { return m.ID == n.id }) {
			return nil
		}
		if err = leader.Join(ctx, raftnode.NodeInfo{ID: n.id, RaftAddr: string(n.addr), Region: n.region}); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %w", n.id, err)
		case <-time.After(retryPause):
		}
	}
}

// open starts an incarnation of n from its files.
func (c *Cluster) open(n *node, bootstrap bool) error {
	_, tr := raft.NewInmemTransport(n.addr)
	store, err := raftnode.Open(raftnode.Config{
		ID: n.id, Region: n.region, DataDir: n.dir, GRPCAddr: "sim-" + n.id,
		Transport: tr, Bootstrap: bootstrap, Logger: c.log, RaftLog: io.Discard,
		FSM:              fsm.Config{CheckInvariants: true},
		HeartbeatTimeout: heartbeatTimeout, ElectionTimeout: electionTimeout,
		SnapshotThreshold: snapshotThreshold, SnapshotInterval: snapshotInterval, TrailingLogs: trailingLogs,
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", n.id, err)
	}
	n.mu.Lock()
	n.store, n.tr, n.down = store, tr, make(chan struct{})
	n.mu.Unlock()
	c.mu.Lock()
	c.wire()
	c.mu.Unlock()
	return nil
}

// wire connects every pair of live transports that no cut or pause
// separates, and disconnects the rest. Called with c.mu held.
func (c *Cluster) wire() {
	for _, a := range c.nodes {
		a.mu.RLock()
		for _, b := range c.nodes {
			if a == b || a.tr == nil {
				continue
			}
			b.mu.RLock()
			up := b.store != nil && a.store != nil && a.resumed == nil && b.resumed == nil && !c.cut[[2]string{a.id, b.id}]
			if up {
				a.tr.Connect(b.addr, b.tr)
			} else {
				a.tr.Disconnect(b.addr)
			}
			b.mu.RUnlock()
		}
		a.mu.RUnlock()
	}
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		c.crash(n)
	}
}

func (c *Cluster) crash(n *node) {
	n.mu.Lock()
	store := n.store
	n.store = nil
	if store != nil {
		close(n.down)
	}
	if n.resumed != nil {
		close(n.resumed)
		n.resumed = nil
	}
	n.mu.Unlock()
	if store != nil {
		store.Close()
	}
	c.mu.Lock()
	c.wire()
	c.mu.Unlock()
}

func (c *Cluster) node(id string) (*node, error) {
	for _, n := range c.nodes {
		if n.id == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q", id)
}

// leader returns the node that leads now, or nil.
func (c *Cluster) leader() *node {
	for _, n := range c.nodes {
		n.mu.RLock()
		ok := n.store != nil && n.resumed == nil && n.store.IsLeader()
		n.mu.RUnlock()
		if ok {
			return n
		}
	}
	return nil
}

func (c *Cluster) waitLeader(ctx context.Context) (*raftnode.Node, error) {
	for {
		if n := c.leader(); n != nil {
			n.mu.RLock()
			s := n.store
			n.mu.RUnlock()
			if s != nil {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(retryPause):
		}
	}
}

// propose sends a command to the leader, following hints and retrying
// until ctx ends. It returns the result, or the last error.
func (c *Cluster) propose(ctx context.Context, cmd *fsmpb.Command, onFailure func(*raftnode.Node, error) (*fsm.Result, bool)) (*fsm.Result, error) {
	err := errors.New("no attempt made")
	for ctx.Err() == nil {
		i := int(c.hint.Load())
		n := c.nodes[i]
		n.mu.RLock()
		store, resumed, down := n.store, n.resumed, n.down
		n.mu.RUnlock()
		if resumed != nil {
			// A paused node holds its callers until it is resumed.
			select {
			case <-resumed:
			case <-ctx.Done():
			}
			continue
		}
		if store == nil {
			c.next(i)
			continue
		}
		wasLeader := store.IsLeader()
		var res *fsm.Result
		res, err = proposeOnce(ctx, store, down, cmd)
		if err == nil {
			return res, nil
		}
		if wasLeader && onFailure != nil {
			if res, ok := onFailure(store, err); ok {
				return res, nil
			}
		}
		var nl *raftnode.NotLeaderError
		if errors.As(err, &nl) && nl.LeaderID != "" {
			c.follow(nl.LeaderID)
		} else {
			c.next(i)
		}
		select {
		case <-ctx.Done():
		case <-time.After(retryPause):
		}
	}
	return nil, err
}

// errCrashed: the node crashed while a call was in flight; the caller, as
// one whose connection was reset, does not know what became of it.
var errCrashed = errors.New("node crashed during the call")

// proposeOnce is one attempt. raftnode.Propose waits for an appended entry
// even past its context, and a future still queued in raft's apply channel
// when the node shuts down is never answered (hashicorp/raft with
// BatchApplyCh), so the attempt also ends when the node crashes or the
// call's context ends; the abandoned wait then ends with the process.
func proposeOnce(ctx context.Context, store *raftnode.Node, down <-chan struct{}, cmd *fsmpb.Command) (*fsm.Result, error) {
	type answer struct {
		res *fsm.Result
		err error
	}
	done := make(chan answer, 1)
	attempt, cancel := context.WithTimeout(ctx, attemptTimeout)
	cmd = proto.Clone(cmd).(*fsmpb.Command) // Propose stamps it
	go func() {
		defer cancel()
		res, _, err := store.Propose(attempt, cmd)
		done <- answer{res, err}
	}()
	select {
	case a := <-done:
		return a.res, a.err
	case <-down:
		return nil, errCrashed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Cluster) next(i int) {
	c.hint.CompareAndSwap(int32(i), int32((i+1)%len(c.nodes)))
}

func (c *Cluster) follow(id string) {
	for i, n := range c.nodes {
		if n.id == id {
			c.hint.Store(int32(i))
		}
	}
}

// Setup creates one open flash-sale campaign per campaign named in items,
// and the items.
func (c *Cluster) Setup(ctx context.Context, items []check.ItemSpec) error {
	created := map[string]bool{}
	var cmds []*fsmpb.Command
	for _, it := range items {
		if !created[it.Campaign] {
			created[it.Campaign] = true
			cmds = append(cmds, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN,
				CreateCampaign: &fsmpb.CreateCampaign{CampaignId: it.Campaign, Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: it.Campaign}})
		}
		cmds = append(cmds, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM,
			AddItem: &fsmpb.AddItem{CampaignId: it.Campaign, ItemId: it.Item, Stock: it.Stock, PerUserLimit: it.PerUserLimit}})
	}
	for id := range created {
		cmds = append(cmds, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN,
			UpdateCampaign: &fsmpb.UpdateCampaign{CampaignId: id, State: fsmpb.CampaignState_CAMPAIGN_STATE_OPEN.Enum()}})
	}
	for _, cmd := range cmds {
		res, err := c.propose(ctx, cmd, nil)
		if err != nil {
			return fmt.Errorf("%v: %w", cmd.GetType(), err)
		}
		if r := res.Outcomes[0].Reason; r != fsm.ReasonOK && r != fsm.ReasonAlreadyExists {
			return fmt.Errorf("%v: %v %s", cmd.GetType(), r, res.Outcomes[0].Message)
		}
	}
	return nil
}

// Claim proposes a batch of one claim to the leader.
func (c *Cluster) Claim(ctx context.Context, req runner.ClaimRequest) runner.ClaimResult {
	user := req.User
	if c.brk == BreakSkipUserLimit {
		user += userSeparator + req.RequestID
	}
	cmd := &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH, ClaimBatch: &fsmpb.ClaimBatch{
		Claims: []*fsmpb.ClaimRequest{{RequestId: req.RequestID, CampaignId: req.Campaign, ItemId: req.Item, UserId: user, Quantity: req.Quantity}}}}
	var onFailure func(*raftnode.Node, error) (*fsm.Result, bool)
	if c.brk == BreakAckBeforeCommit {
		onFailure = func(leader *raftnode.Node, _ error) (*fsm.Result, bool) { return predict(leader.FSM(), req), true }
	}
	res, err := c.propose(ctx, cmd, onFailure)
	if err != nil {
		return runner.ClaimResult{Outcome: check.Unknown, Reason: err.Error()}
	}
	o := res.Outcomes[0]
	switch o.Reason {
	case fsm.ReasonOK:
		return runner.ClaimResult{Outcome: check.Granted, ClaimID: o.Claim.ID}
	case fsm.ReasonSoldOut:
		return runner.ClaimResult{Outcome: check.SoldOut, Reason: o.Reason.String()}
	case fsm.ReasonLimitReached:
		return runner.ClaimResult{Outcome: check.LimitReached, Reason: o.Reason.String()}
	default:
		return runner.ClaimResult{Outcome: check.Refused, Reason: o.Reason.String()}
	}
}

// predict is what a store that answers before commit would say: the
// outcome the leader's applied state suggests, with the next claim ID.
func predict(f *fsm.FSM, req runner.ClaimRequest) *fsm.Result {
	it, ok := f.Item(req.Campaign, req.Item)
	if !ok {
		return &fsm.Result{Outcomes: []fsm.Outcome{{Reason: fsm.ReasonItemNotFound}}}
	}
	var held uint64
	for _, cl := range f.ClaimsByUser(req.User, req.Campaign) {
		if cl.ItemID == req.Item && cl.State != fsm.ClaimReleased {
			held += uint64(cl.Quantity)
		}
	}
	switch {
	case held+uint64(req.Quantity) > uint64(it.PerUserLimit):
		return &fsm.Result{Outcomes: []fsm.Outcome{{Reason: fsm.ReasonLimitReached}}}
	case it.Available < uint64(req.Quantity):
		return &fsm.Result{Outcomes: []fsm.Outcome{{Reason: fsm.ReasonSoldOut}}}
	}
	return &fsm.Result{Outcomes: []fsm.Outcome{{Claim: fsm.Claim{ID: uint64(f.Stats().Claims) + 1}}}}
}

// Final waits until every node has applied the same index, then reads the
// state from one node and every node's digest.
func (c *Cluster) Final(ctx context.Context, items []check.ItemSpec, _ []string) check.Final {
	stores, err := c.converged(ctx)
	if err != nil {
		return check.Final{Err: err.Error()}
	}
	var out check.Final
	f := stores[0].FSM()
	campaigns := map[string]bool{}
	for _, spec := range items {
		campaigns[spec.Campaign] = true
		it, ok := f.Item(spec.Campaign, spec.Item)
		if !ok {
			continue
		}
		out.Items = append(out.Items, check.FinalItem{Campaign: it.CampaignID, Item: it.ID,
			Total: it.Total, Available: it.Available, Reserved: it.Reserved, Sold: it.Sold})
	}
	for id := uint64(1); id <= uint64(f.Stats().Claims); id++ {
		cl, ok := f.Claim(id)
		if !ok || !campaigns[cl.CampaignID] {
			continue
		}
		user, _, _ := strings.Cut(cl.UserID, userSeparator)
		out.Claims = append(out.Claims, check.FinalClaim{ID: cl.ID, Campaign: cl.CampaignID, Item: cl.ItemID,
			User: user, RequestID: cl.RequestID, Quantity: cl.Quantity, State: claimState(cl.State)})
	}
	for i, s := range stores {
		digest, index := s.FSM().Digest()
		ns := check.NodeState{ID: c.nodes[i].id, AppliedIndex: index, Digest: digest}
		if err := s.FSM().CheckInvariants(); err != nil {
			ns.Err = err.Error()
		}
		out.Nodes = append(out.Nodes, ns)
	}
	return out
}

func claimState(s fsm.ClaimState) string {
	switch s {
	case fsm.ClaimSettled:
		return check.ClaimSettled
	case fsm.ClaimReleased:
		return check.ClaimReleased
	}
	return check.ClaimReserved
}

// converged waits until every node is up and has applied its whole log,
// the same on all, twice in a row.
func (c *Cluster) converged(ctx context.Context) ([]*raftnode.Node, error) {
	var lastIndex uint64
	stable := 0
	for {
		stores := make([]*raftnode.Node, 0, len(c.nodes))
		same := true
		var index uint64
		for i, n := range c.nodes {
			n.mu.RLock()
			s := n.store
			n.mu.RUnlock()
			if s == nil {
				same = false
				break
			}
			stores = append(stores, s)
			// raft's applied index counts the entries the state machine
			// never sees (no-ops, configurations).
			applied := s.Raft().AppliedIndex()
			if i == 0 {
				index = applied
			}
			if applied != index || s.Raft().LastIndex() != applied {
				same = false
			}
		}
		if same && index == lastIndex {
			stable++
		} else {
			stable = 0
		}
		lastIndex = index
		if stable >= 2 {
			return stores, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("replicas did not converge (%s): %w", c.describe(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// describe is every node's raft state, for an error.
func (c *Cluster) describe() string {
	var parts []string
	for _, n := range c.nodes {
		n.mu.RLock()
		s := n.store
		n.mu.RUnlock()
		if s == nil {
			parts = append(parts, n.id+" down")
			continue
		}
		st := s.Status()
		parts = append(parts, fmt.Sprintf("%s %s term %d last %d commit %d applied %d leader %q",
			n.id, st.State, st.Term, st.LastLogIndex, st.CommitIndex, st.AppliedIndex, st.LeaderID))
	}
	return strings.Join(parts, "; ")
}
