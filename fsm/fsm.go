// Package fsm is flashd's replicated state machine: campaigns, items, stock,
// reservations, per-user claims, idempotency records, cluster members and the
// front-door configuration. It is deterministic: time and randomness come
// only from the command, results never depend on map order, and it does no
// I/O outside snapshot and restore. DESIGN.md explains the data layout.
package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Errors. Business refusals are not errors: they are Outcomes with a Reason.
var (
	// ErrInvalidConfig: a Config value is out of range.
	ErrInvalidConfig = errors.New("fsm: invalid config")
	// ErrUnknownCommand: a command type this version does not apply.
	ErrUnknownCommand = errors.New("fsm: unknown command type")
	// ErrMalformedCommand: a command whose body does not match its type.
	ErrMalformedCommand = errors.New("fsm: malformed command")
	// ErrSnapshotVersion: a snapshot in a format this version cannot read.
	ErrSnapshotVersion = errors.New("fsm: unknown snapshot format version")
	// ErrSnapshotCorrupt: a snapshot whose records do not make a valid state.
	ErrSnapshotCorrupt = errors.New("fsm: corrupt snapshot")
	// ErrInvariant: the state breaks an invariant (see CheckInvariants).
	ErrInvariant = errors.New("fsm: invariant broken")
)

// Defaults for a zero Config.
const (
	defaultIdempotencyRetention  = 10 * time.Minute
	defaultIdempotencyMaxRecords = 1_000_000
	// idempotencyMaxRecordsMax keeps the records queued far below the
	// positions the index can tell apart (indexSide).
	idempotencyMaxRecordsMax = 1 << 30
)

// Config tunes the state machine. Every node of a cluster must run the same
// Config: the idempotency bounds decide which retries are recognized, so
// different values would make replicas answer differently.
type Config struct {
	IdempotencyRetention  time.Duration // by command time; 0: 10 minutes
	IdempotencyMaxRecords int           // by count; 0: 1,000,000; at most 2^30
	// CheckInvariants checks every invariant after every command and panics
	// on a violation. It costs a pass over all state per command: for tests
	// and debugging.
	CheckInvariants bool
}

func (c Config) withDefaults() (Config, error) {
	if c.IdempotencyRetention < 0 {
		return c, fmt.Errorf("%w: IdempotencyRetention %v is negative", ErrInvalidConfig, c.IdempotencyRetention)
	}
	if c.IdempotencyMaxRecords < 0 || c.IdempotencyMaxRecords > idempotencyMaxRecordsMax {
		return c, fmt.Errorf("%w: IdempotencyMaxRecords %d is not in 0 to %d", ErrInvalidConfig, c.IdempotencyMaxRecords, idempotencyMaxRecordsMax)
	}
	if c.IdempotencyRetention == 0 {
		c.IdempotencyRetention = defaultIdempotencyRetention
	}
	if c.IdempotencyMaxRecords == 0 {
		c.IdempotencyMaxRecords = defaultIdempotencyMaxRecords
	}
	return c, nil
}

// FSM is the state machine raft applies the log to. Reads may run
// concurrently with Apply; Apply takes the write lock once per batch.
type FSM struct {
	cfg Config

	mu      sync.RWMutex
	s       *state
	changed chan struct{} // closed when a watched part of the state changes

	claimScratch []claimRequest // reused by every claim batch; only under mu
	prefetched   uint64         // sink for the loads of claimBatch's prefetch; never read
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty state machine.
func New(cfg Config) (*FSM, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &FSM{cfg: cfg, s: newState(cfg), changed: make(chan struct{})}, nil
}

// Apply applies one log entry. It returns a *Result for a command entry and
// nil for any other entry type.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.applyLog(l)
	f.notifyChanged()
	if res == nil {
		return nil
	}
	return res
}

// ApplyBatch applies consecutive log entries under one lock.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range logs {
		if res := f.applyLog(l); res != nil {
			out[i] = res
		}
	}
	f.notifyChanged()
	return out
}

func (f *FSM) applyLog(l *raft.Log) *Result {
	f.s.appliedIndex = l.Index
	if l.Type != raft.LogCommand {
		return nil
	}
	e, err := decodeCommand(l.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: log entry %d does not decode: %v", l.Index, err))
	}
	res := f.applyCommand(e)
	if f.cfg.CheckInvariants {
		if err := f.s.checkInvariants(); err != nil {
			panic(fmt.Sprintf("fsm: after log entry %d (%v): %v", l.Index, e.typ, err))
		}
	}
	return res
}

// notifyChanged wakes the Changed watchers if the last apply changed what
// they watch.
func (f *FSM) notifyChanged() {
	if f.s.changed {
		f.s.changed = false
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

// Changed returns a channel that is closed after the next apply that changes
// an item's counters, a campaign or the front-door configuration (or after a
// restore). Call it again for the next change.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// AppliedIndex is the Raft index of the last applied entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.appliedIndex
}

// Campaign returns campaign id.
func (f *FSM) Campaign(id string) (Campaign, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c := f.s.campaigns[id]
	if c == nil {
		return Campaign{}, false
	}
	return c.view(), true
}

// Campaigns returns every campaign, sorted by ID.
func (f *FSM) Campaigns() []Campaign {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Campaign, 0, len(f.s.campaignOrder))
	for _, c := range f.s.campaignOrder {
		out = append(out, c.view())
	}
	return out
}

// Item returns one item's counters.
func (f *FSM) Item(campaignID, itemID string) (Item, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	it := f.s.item(campaignID, itemID)
	if it == nil {
		return Item{}, false
	}
	return it.view(), true
}

// Items returns a campaign's items sorted by ID, or with campaignID "" every
// campaign's, sorted by campaign ID then item ID.
func (f *FSM) Items(campaignID string) []Item {
	f.mu.RLock()
	defer f.mu.RUnlock()
	campaigns := f.s.campaignOrder
	if campaignID != "" {
		c := f.s.campaigns[campaignID]
		if c == nil {
			return nil
		}
		campaigns = []*campaign{c}
	}
	var out []Item
	for _, c := range campaigns {
		for _, it := range c.itemOrder {
			out = append(out, it.view())
		}
	}
	return out
}

// Claim returns claim id.
func (f *FSM) Claim(id uint64) (Claim, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.s.claims.get(id) == nil {
		return Claim{}, false
	}
	return f.s.claimView(id), true
}

// ClaimsByUser returns a user's claims in every state, ordered by claim ID;
// campaignID "" means every campaign.
func (f *FSM) ClaimsByUser(userID, campaignID string) []Claim {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ids := f.s.userClaims(userID)
	var out []Claim
	for _, id := range slices.Backward(ids) {
		if campaignID == "" || f.s.claims.item(f.s.claims.get(id)).campaign.id == campaignID {
			out = append(out, f.s.claimView(id))
		}
	}
	return out
}

// ReservedClaims returns up to limit reservations that have a deadline,
// earliest deadline first (ties by claim ID). Reservations without a
// deadline never expire and are not listed.
func (f *FSM) ReservedClaims(limit int) []Claim {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Claim
	for _, id := range f.s.reservationsByDeadline(limit) {
		out = append(out, f.s.claimView(id))
	}
	return out
}

// Nodes returns the registered cluster members, sorted by ID.
func (f *FSM) Nodes() []Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.sortedNodes()
}

// FrontDoorConfig returns the funnel configuration front doors follow.
func (f *FSM) FrontDoorConfig() FrontDoorConfig {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.frontDoor
}

// Stats counts the records the state machine holds.
func (f *FSM) Stats() Stats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	items := 0
	for _, c := range f.s.campaignOrder {
		items += len(c.itemOrder)
	}
	return Stats{
		Campaigns: len(f.s.campaignOrder), Items: items,
		Claims: int(f.s.claims.len()), IdempotencyRecords: f.s.idempotency.len(),
	}
}

// CheckInvariants checks every invariant (see invariants.go) and describes
// the first one broken.
func (f *FSM) CheckInvariants() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.checkInvariants()
}

func (s *state) sortedNodes() []Node {
	out := make([]Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}
