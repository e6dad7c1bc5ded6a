package fsm

import (
	"fmt"
	"slices"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// Bounds of the settlement feed (see DESIGN.md, "Settlement feed").
const (
	feedGroupsMax     = 64               // worker groups, each with its own cursor
	leaseClaimsMax    = 1000             // claims one LeaseClaims may hand out
	leaseScanMax      = 16384            // claims one LeaseClaims looks at past the cursor
	leasesMax         = 100_000          // live leases per group
	leaseDurationMax  = int64(time.Hour) // longest lease
	msgBadGroup       = "worker group must be 1 to 128 bytes of UTF-8 without control characters"
	msgBadWorker      = "worker ID must be 1 to 128 bytes of UTF-8 without control characters"
	msgTooManyGroups  = "too many settlement worker groups"
	msgBadLeaseLength = "lease duration must be positive and at most an hour"
)

// settlementFeed is one worker group's place in the feed of open claims:
// reserved or ordering (to settle), to compensate or cancelling (to settle
// or cancel). Claims are dense from 1, so the feed is the claim table itself
// in ID order: cursor is the first claim that may still be open (every claim
// below it is settled or released), and leases say which of the open claims
// at or past the cursor a worker holds, until when.
type settlementFeed struct {
	cursor uint64
	leases map[uint64]lease // by claim ID; looked up, never iterated to decide
}

type lease struct {
	worker   string
	deadline int64 // command time, Unix nanoseconds
}

// applyLeaseClaims moves the group's cursor past the claims that are no
// longer open, then leases up to max open claims from it in ID order,
// passing over those another lease holds until a deadline not yet reached.
// A claim's state in the answer tells the worker what to do with it.
func (s *state) applyLeaseClaims(b *fsmpb.LeaseClaims) *Result {
	switch {
	case !validID(b.GetGroup()):
		return refusal(ReasonInvalidArgument, msgBadGroup)
	case !validID(b.GetWorker()):
		return refusal(ReasonInvalidArgument, msgBadWorker)
	case b.GetMax() == 0 || b.GetMax() > leaseClaimsMax:
		return refusal(ReasonInvalidArgument, fmt.Sprintf("a lease takes 1 to %d claims", leaseClaimsMax))
	case b.GetLeaseNanos() <= 0 || b.GetLeaseNanos() > leaseDurationMax:
		return refusal(ReasonInvalidArgument, msgBadLeaseLength)
	}
	feed := s.feeds[b.GetGroup()]
	if feed == nil {
		if len(s.feeds) >= feedGroupsMax {
			return refusal(ReasonInvalidArgument, msgTooManyGroups)
		}
		feed = &settlementFeed{cursor: 1, leases: make(map[uint64]lease)}
		s.feeds[b.GetGroup()] = feed
	}
	for feed.cursor <= s.claims.len() && !s.claims.get(feed.cursor).open() {
		delete(feed.leases, feed.cursor)
		feed.cursor++
	}
	deadline := addSaturating(s.clock, b.GetLeaseNanos())
	res := &Result{Outcomes: []Outcome{{}}, LeaseDeadline: timeFromNanos(deadline)}
	end := min(s.claims.len(), feed.cursor+leaseScanMax-1)
	for id := feed.cursor; id <= end && len(res.Leased) < int(b.GetMax()); id++ {
		if !s.claims.get(id).open() {
			delete(feed.leases, id)
			continue
		}
		l, held := feed.leases[id]
		if held && l.deadline > s.clock {
			continue
		}
		if !held && len(feed.leases) >= leasesMax {
			break
		}
		feed.leases[id] = lease{worker: b.GetWorker(), deadline: deadline}
		res.Leased = append(res.Leased, s.claimView(id))
	}
	res.Cursor = feed.cursor
	return res
}

// SettlementFeed is a read-only view of one worker group's feed.
type SettlementFeed struct {
	Group  string
	Cursor uint64 // first claim that may still be open
	Leases int    // leases held, some maybe past their deadline
}

// SettlementFeeds returns every worker group's cursor, sorted by group.
func (f *FSM) SettlementFeeds() []SettlementFeed {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []SettlementFeed
	for _, g := range f.s.sortedGroups() {
		feed := f.s.feeds[g]
		out = append(out, SettlementFeed{Group: g, Cursor: feed.cursor, Leases: len(feed.leases)})
	}
	return out
}

func (s *state) sortedGroups() []string {
	groups := make([]string, 0, len(s.feeds))
	for g := range s.feeds {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	return groups
}

// sortedLeases returns a feed's leases by claim ID.
func (feed *settlementFeed) sortedLeases() []uint64 {
	ids := make([]uint64, 0, len(feed.leases))
	for id := range feed.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// checkFeeds checks that every cursor has only settled and released claims
// below it (none open) and every lease names a claim at or past its cursor.
func (s *state) checkFeeds() error {
	for _, g := range s.sortedGroups() {
		feed := s.feeds[g]
		if feed.cursor == 0 || feed.cursor > s.claims.len()+1 {
			return fmt.Errorf("settlement feed %q: cursor %d of %d claims", g, feed.cursor, s.claims.len())
		}
		for id := uint64(1); id < feed.cursor; id++ {
			if s.claims.get(id).open() {
				return fmt.Errorf("settlement feed %q: claim %d is open, below the cursor %d", g, id, feed.cursor)
			}
		}
		for _, id := range feed.sortedLeases() {
			if l := feed.leases[id]; id < feed.cursor || id > s.claims.len() || !validID(l.worker) {
				return fmt.Errorf("settlement feed %q: lease of claim %d by %q out of place", g, id, l.worker)
			}
		}
	}
	return nil
}

// feedRecords returns the snapshot records of every worker group, by group.
func (s *state) feedRecords() []*fsmpb.SettlementFeedRecord {
	var out []*fsmpb.SettlementFeedRecord
	for _, g := range s.sortedGroups() {
		feed := s.feeds[g]
		rec := &fsmpb.SettlementFeedRecord{Group: g, Cursor: feed.cursor}
		for _, id := range feed.sortedLeases() {
			l := feed.leases[id]
			rec.Leases = append(rec.Leases, &fsmpb.Lease{ClaimId: id, Worker: l.worker, DeadlineUnixNano: l.deadline})
		}
		out = append(out, rec)
	}
	return out
}

func (s *state) restoreFeed(rec *fsmpb.SettlementFeedRecord) error {
	if !validID(rec.GetGroup()) || s.feeds[rec.GetGroup()] != nil || len(s.feeds) >= feedGroupsMax {
		return fmt.Errorf("settlement feed record %v", rec)
	}
	feed := &settlementFeed{cursor: rec.GetCursor(), leases: make(map[uint64]lease, len(rec.GetLeases()))}
	for _, l := range rec.GetLeases() {
		if _, dup := feed.leases[l.GetClaimId()]; dup {
			return fmt.Errorf("settlement feed record %q: claim %d leased twice", rec.GetGroup(), l.GetClaimId())
		}
		feed.leases[l.GetClaimId()] = lease{worker: l.GetWorker(), deadline: l.GetDeadlineUnixNano()}
	}
	s.feeds[rec.GetGroup()] = feed
	return nil
}
