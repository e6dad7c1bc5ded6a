// Package raftnode wires hashicorp/raft for one flashd store node: the bbolt
// log and stable store, the file snapshot store, the transport, membership,
// leader observation and the linearizable-read barrier. It proposes commands
// to the state machine in package fsm and knows nothing of gRPC.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/flashd/flashd/fsm"
	"github.com/flashd/flashd/fsm/fsmpb"
)

// Errors callers match with errors.Is.
var (
	// ErrNotLeader: this node cannot take writes or linearizable reads; the
	// error is a *NotLeaderError naming the leader when one is known.
	ErrNotLeader = errors.New("not the leader")
	// ErrLeaderNotReady: this node won an election but has not yet committed
	// an entry of its own term, so its commit index may still lag.
	ErrLeaderNotReady = errors.New("leader not ready")
	// ErrShutdown: the node is closing.
	ErrShutdown = errors.New("node is shutting down")
	// ErrBadConfig: a configuration value is out of range.
	ErrBadConfig = errors.New("bad raft node config")
)

// NotLeaderError carries the leader hint with ErrNotLeader.
type NotLeaderError struct {
	LeaderID   string
	LeaderRaft string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the leader; no leader known"
	}
	return fmt.Sprintf("not the leader; leader is %s (%s)", e.LeaderID, e.LeaderRaft)
}

func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

const (
	logCacheEntries   = 1024
	snapshotsRetained = 2
	transportPoolSize = 4
	transportTimeout  = 5 * time.Second
	readPollInterval  = 200 * time.Microsecond
	expiryInterval    = time.Second
	expiryProposeWait = 5 * time.Second
)

// Config configures one node. Zero tuning values take the defaults below.
type Config struct {
	ID       string
	Region   string
	DataDir  string
	RaftAddr string // bind and advertised address for the TCP transport
	GRPCAddr string // advertised, recorded in the replicated node registry
	HTTPAddr string

	// Bootstrap makes this node the first voter of a new cluster when it has
	// no state yet. Ignored when state exists (a restart).
	Bootstrap bool

	// Transport replaces the TCP transport (tests use raft's in-memory one).
	Transport raft.Transport

	FSM    fsm.Config
	Logger *slog.Logger
	// RaftLog receives hashicorp/raft's own log lines (warnings and up);
	// nil means standard error.
	RaftLog io.Writer

	// MaxAppendEntries is how many log entries the leader writes with one
	// fsync and sends in one AppendEntries; BatchApplyCh lets that many
	// proposals queue for one group commit. See raftnode/DESIGN.md.
	MaxAppendEntries  int
	NoBatchApplyCh    bool
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// NoSync skips fsync of the log: for benchmarks that isolate CPU cost
	// only. Never in production: acknowledged claims could be lost.
	NoSync bool
}

// Defaults, chosen in raftnode/DESIGN.md.
const (
	defaultMaxAppendEntries  = 256
	defaultHeartbeatTimeout  = 1000 * time.Millisecond
	defaultElectionTimeout   = 1000 * time.Millisecond
	defaultSnapshotThreshold = 16384
	defaultSnapshotInterval  = 30 * time.Second
	defaultTrailingLogs      = 4096
)

func (c *Config) validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: empty node ID", ErrBadConfig)
	case c.DataDir == "":
		return fmt.Errorf("%w: empty data dir", ErrBadConfig)
	case c.Transport == nil && c.RaftAddr == "":
		return fmt.Errorf("%w: empty raft address", ErrBadConfig)
	case c.MaxAppendEntries < 0 || c.MaxAppendEntries > 4096:
		return fmt.Errorf("%w: max append entries %d not in 1..4096", ErrBadConfig, c.MaxAppendEntries)
	}
	setDefault(&c.MaxAppendEntries, defaultMaxAppendEntries)
	setDefault(&c.HeartbeatTimeout, defaultHeartbeatTimeout)
	setDefault(&c.ElectionTimeout, defaultElectionTimeout)
	setDefault(&c.SnapshotThreshold, defaultSnapshotThreshold)
	setDefault(&c.SnapshotInterval, defaultSnapshotInterval)
	setDefault(&c.TrailingLogs, defaultTrailingLogs)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Node is one running store node.
type Node struct {
	cfg       Config
	log       *slog.Logger
	fsm       *fsm.FSM
	raft      *raft.Raft
	logStore  *raftboltdb.BoltStore
	transport raft.Transport
	started   time.Time

	// readyTerm is the term in which this node, as leader, committed a
	// barrier; linearizable reads are served only when it equals the
	// current term.
	readyTerm atomic.Uint64
	lastStamp atomic.Int64 // last command time stamped, for monotonic time
	digests   digestCache

	stop chan struct{}
	wg   sync.WaitGroup
}

// Open starts a node: opens (or creates) its files, bootstraps if asked and
// the node has no state, and starts the leader observer.
func Open(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	machine, err := fsm.New(cfg.FSM)
	if err != nil {
		return nil, fmt.Errorf("create state machine: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), fsm: machine, started: time.Now(), stop: make(chan struct{})}
	if err := n.openRaft(); err != nil {
		n.closeStores()
		return nil, err
	}
	n.wg.Add(2)
	go n.observeLeadership()
	go n.proposeExpiries()
	return n, nil
}

func (n *Node) openRaft() error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:   filepath.Join(n.cfg.DataDir, "raft.db"),
		NoSync: n.cfg.NoSync,
		// The freelist is rebuilt on open instead of written on every
		// commit: fewer pages per fsync (DESIGN.md section 8).
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	n.logStore = store
	cached, err := raft.NewLogCache(logCacheEntries, store)
	if err != nil {
		return fmt.Errorf("create log cache: %w", err)
	}
	hlog := n.hclogger()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, snapshotsRetained, hlog)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	if err := n.openTransport(hlog); err != nil {
		return err
	}
	rc := n.raftConfig(hlog)
	hasState, err := raft.HasExistingState(cached, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	if n.cfg.Bootstrap && !hasState {
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: n.transport.LocalAddr(), Suffrage: raft.Voter}}}
		if err := raft.BootstrapCluster(rc, cached, store, snaps, n.transport, boot); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, cached, store, snaps, n.transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	return nil
}

func (n *Node) openTransport(hlog hclog.Logger) error {
	if n.cfg.Transport != nil {
		n.transport = n.cfg.Transport
		return nil
	}
	t, err := raft.NewTCPTransportWithLogger(n.cfg.RaftAddr, nil, transportPoolSize, transportTimeout, hlog)
	if err != nil {
		return fmt.Errorf("open raft transport on %s: %w", n.cfg.RaftAddr, err)
	}
	n.transport = t
	return nil
}

func (n *Node) raftConfig(hlog hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.Logger = hlog
	rc.MaxAppendEntries = n.cfg.MaxAppendEntries
	rc.BatchApplyCh = !n.cfg.NoBatchApplyCh
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.HeartbeatTimeout / 2
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	return rc
}

func (n *Node) hclogger() hclog.Logger {
	out := n.cfg.RaftLog
	if out == nil {
		out = os.Stderr
	}
	return hclog.New(&hclog.LoggerOptions{Name: "raft." + n.cfg.ID, Level: hclog.Warn, Output: out})
}

// Close stops the node's goroutines and raft, and closes its files.
func (n *Node) Close() error {
	select {
	case <-n.stop:
		return nil
	default:
	}
	close(n.stop)
	n.wg.Wait()
	var err error
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	if c, ok := n.transport.(interface{ Close() error }); ok && n.cfg.Transport == nil {
		err = errors.Join(err, c.Close())
	}
	return errors.Join(err, n.closeStores())
}

func (n *Node) closeStores() error {
	if n.logStore == nil {
		return nil
	}
	return n.logStore.Close()
}

// FSM gives read access to the applied state.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft exposes the raft instance to tests and metrics.
func (n *Node) Raft() *raft.Raft { return n.raft }

// ID is this node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// RaftAddr is the address this node's raft transport is reached at.
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// Region is this node's region label.
func (n *Node) Region() string { return n.cfg.Region }

// Propose stamps cmd with the leader's time and a seed, appends it to the log
// and waits until it is committed and applied. The context's deadline bounds
// the wait for a place in the log; once appended, the result is awaited even
// if the context ends, so an acknowledged result is never dropped.
func (n *Node) Propose(ctx context.Context, cmd *fsmpb.Command) (*fsm.Result, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if n.raft.State() != raft.Leader {
		return nil, 0, n.notLeader()
	}
	cmd.TimeUnixNano = n.stampTime()
	cmd.Seed = rand.Uint64()
	data, err := fsm.EncodeCommand(cmd)
	if err != nil {
		return nil, 0, fmt.Errorf("encode command: %w", err)
	}
	future := n.raft.Apply(data, applyTimeout(ctx))
	if err := future.Error(); err != nil {
		return nil, 0, n.applyError(err)
	}
	res, ok := future.Response().(*fsm.Result)
	if !ok {
		return nil, 0, fmt.Errorf("state machine returned %T", future.Response())
	}
	return res, future.Index(), nil
}

// applyTimeout turns the caller's deadline into raft's enqueue timeout.
func applyTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 0
}

// stampTime returns now, but never less than the last stamp, so command time
// does not run backwards on this leader even if its clock steps back.
func (n *Node) stampTime() int64 {
	for {
		now := time.Now().UnixNano()
		last := n.lastStamp.Load()
		if now <= last {
			now = last + 1
		}
		if n.lastStamp.CompareAndSwap(last, now) {
			return now
		}
	}
}

func (n *Node) applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("propose: %w", context.DeadlineExceeded)
	}
	return fmt.Errorf("propose: %w", err)
}

// NotLeader is the error for a request that needs the leader, with the hint.
func (n *Node) NotLeader() error { return n.notLeader() }

func (n *Node) notLeader() error {
	addr, id := n.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderRaft: string(addr)}
}

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the known leader's ID and its registered metadata (zero if
// the leader has not registered yet).
func (n *Node) Leader() (string, fsm.Node) {
	_, id := n.raft.LeaderWithID()
	for _, m := range n.fsm.Nodes() {
		if m.ID == string(id) {
			return m.ID, m
		}
	}
	return string(id), fsm.Node{}
}

// LinearizableRead returns once this node's applied state reflects every
// write committed before the call: it must be the leader, have committed an
// entry in its current term, and still hold leadership (VerifyLeader: a lease
// alone is not enough, DESIGN.md section 8).
func (n *Node) LinearizableRead(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if n.readyTerm.Load() != n.currentTerm() {
		return ErrLeaderNotReady
	}
	readIndex := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return n.applyError(err)
	}
	return n.waitApplied(ctx, readIndex)
}

func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for n.fsm.AppliedIndex() < index {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return ErrShutdown
		case <-time.After(readPollInterval):
		}
	}
	return nil
}

func (n *Node) currentTerm() uint64 {
	return n.raft.CurrentTerm()
}
