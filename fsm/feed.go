package fsm

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// Bounds of the settlement feed (see DESIGN.md, "Settlement feed").
const (
	feedGroupsMax     = 64               // worker groups, each with its own cursor
	leaseClaimsMax    = 1000             // claims one LeaseClaims may hand out
	leaseCampaignsMax = 64               // campaigns one LeaseClaims may name
	leaseScanMax      = 16384            // claims one LeaseClaims looks at past the cursor
	leasesMax         = 100_000          // live leases per group
	leaseDurationMax  = int64(time.Hour) // longest lease
	msgBadGroup       = "worker group must be 1 to 128 bytes of UTF-8 without control characters"
	msgBadWorker      = "worker ID must be 1 to 128 bytes of UTF-8 without control characters"
	msgTooManyGroups  = "too many settlement worker groups"
	msgBadLeaseLength = "lease duration must be positive and at most an hour"
	msgBadCampaigns   = "a lease names at most 64 campaigns, each 1 to 128 bytes of UTF-8 without control characters"
)

// settlementFeed is one worker group's place in the feed of open claims:
// reserved or ordering (to settle), to compensate or cancelling (to settle
// or cancel). Claims are dense from 1, so the feed is the claim table itself
// in ID order: cursor is the first claim that may still be open (every claim
// below it is settled or released), and leases say which of the open claims
// at or past the cursor a worker holds, until when.
//
// A lease may name campaigns (a worker settles only theirs). Each campaign
// so named has its own cursor in the group, past the group's, which passes
// the claims of other campaigns open or not: one campaign's backlog (its
// workers down, its order service slow) holds up another's workers for one
// scan at most, not until the backlog is settled.
type settlementFeed struct {
	cursor     uint64
	leases     map[uint64]lease  // by claim ID; looked up, never iterated to decide
	byCampaign map[string]uint64 // campaign → its cursor, when past cursor; iterated only sorted
}

type lease struct {
	worker   string
	deadline int64 // command time, Unix nanoseconds
}

// applyLeaseClaims moves the group's cursor past the claims that are no
// longer open, then leases up to max open claims from it in ID order,
// passing over those another lease holds until a deadline not yet reached,
// and those of other campaigns when the command names campaigns. A claim's
// state in the answer tells the worker what to do with it.
func (s *state) applyLeaseClaims(b *fsmpb.LeaseClaims) *Result {
	switch {
	case !validCampaigns(b.GetCampaigns()):
		return refusal(ReasonInvalidArgument, msgBadCampaigns)
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
		feed = &settlementFeed{cursor: 1, leases: make(map[uint64]lease), byCampaign: make(map[string]uint64)}
		s.feeds[b.GetGroup()] = feed
	}
	if moved := feed.advance(s); moved {
		maps.DeleteFunc(feed.byCampaign, func(_ string, at uint64) bool { return at <= feed.cursor })
	}
	deadline := addSaturating(s.clock, b.GetLeaseNanos())
	res := &Result{Outcomes: []Outcome{{}}, LeaseDeadline: timeFromNanos(deadline)}
	take := func(id uint64) (stop bool) {
		l, held := feed.leases[id]
		if held && l.deadline > s.clock {
			return false
		}
		if !held && len(feed.leases) >= leasesMax {
			return true
		}
		feed.leases[id] = lease{worker: b.GetWorker(), deadline: deadline}
		res.Leased = append(res.Leased, s.claimView(id))
		return len(res.Leased) >= int(b.GetMax())
	}
	if len(b.GetCampaigns()) > 0 {
		res.Cursor = s.leaseOfCampaigns(feed, b.GetCampaigns(), take)
		return res
	}
	end := min(s.claims.len(), feed.cursor+leaseScanMax-1)
	for id := feed.cursor; id <= end; id++ {
		if !s.claims.get(id).open() {
			delete(feed.leases, id)
			continue
		}
		if take(id) {
			break
		}
	}
	res.Cursor = feed.cursor
	return res
}

// advance moves the group's cursor past the claims no longer open and
// reports whether it moved.
func (feed *settlementFeed) advance(s *state) bool {
	from := feed.cursor
	for feed.cursor <= s.claims.len() && !s.claims.get(feed.cursor).open() {
		delete(feed.leases, feed.cursor)
		feed.cursor++
	}
	return feed.cursor != from
}

// leaseOfCampaigns walks the feed for the open claims of the named
// campaigns (one that does not exist matches nothing), from the lowest of
// their cursors, handing each to take until it says stop, and moves each
// campaign's cursor to its first open claim seen, or to where the walk
// ended. It returns the lowest of their cursors after the walk.
func (s *state) leaseOfCampaigns(feed *settlementFeed, ids []string, take func(uint64) bool) uint64 {
	var named []*campaign
	var at []uint64 // per named campaign: its cursor
	from := s.claims.len() + 1
	for _, id := range ids {
		if c := s.campaigns[id]; c != nil && !slices.Contains(named, c) {
			named = append(named, c)
			at = append(at, max(feed.byCampaign[id], feed.cursor))
			from = min(from, at[len(at)-1])
		}
	}
	blocked := make([]bool, len(named)) // an open claim of the campaign seen: its cursor stays
	end := min(s.claims.len(), from+leaseScanMax-1)
	id := from
	for ; id <= end; id++ {
		c := s.claims.get(id)
		if !c.open() {
			delete(feed.leases, id)
			continue
		}
		k := slices.Index(named, s.claims.item(c).campaign)
		if k < 0 {
			continue
		}
		if !blocked[k] {
			blocked[k], at[k] = true, id
		}
		if take(id) {
			break
		}
	}
	lowest := feed.cursor
	for k, c := range named {
		if !blocked[k] {
			at[k] = max(at[k], id) // no open claim of it before where the walk ended
		}
		if at[k] <= feed.cursor {
			delete(feed.byCampaign, c.id)
		} else {
			feed.byCampaign[c.id] = at[k]
		}
		if k == 0 || at[k] < lowest {
			lowest = at[k]
		}
	}
	return max(lowest, feed.cursor)
}

func validCampaigns(ids []string) bool {
	if len(ids) > leaseCampaignsMax {
		return false
	}
	for _, id := range ids {
		if !validID(id) {
			return false
		}
	}
	return true
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
		for _, campaignID := range slices.Sorted(maps.Keys(feed.byCampaign)) {
			at, c := feed.byCampaign[campaignID], s.campaigns[campaignID]
			if c == nil || at <= feed.cursor || at > s.claims.len()+1 {
				return fmt.Errorf("settlement feed %q: cursor %d of campaign %q, group cursor %d, %d claims", g, at, campaignID, feed.cursor, s.claims.len())
			}
			for id := feed.cursor; id < at; id++ {
				if claim := s.claims.get(id); claim.open() && s.claims.item(claim).campaign == c {
					return fmt.Errorf("settlement feed %q: claim %d of campaign %q is open, below its cursor %d", g, id, campaignID, at)
				}
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
		for _, c := range slices.Sorted(maps.Keys(feed.byCampaign)) {
			rec.CampaignCursors = append(rec.CampaignCursors, &fsmpb.CampaignCursor{CampaignId: c, Cursor: feed.byCampaign[c]})
		}
		out = append(out, rec)
	}
	return out
}

func (s *state) restoreFeed(rec *fsmpb.SettlementFeedRecord) error {
	if !validID(rec.GetGroup()) || s.feeds[rec.GetGroup()] != nil || len(s.feeds) >= feedGroupsMax {
		return fmt.Errorf("settlement feed record %v", rec)
	}
	feed := &settlementFeed{cursor: rec.GetCursor(), leases: make(map[uint64]lease, len(rec.GetLeases())), byCampaign: make(map[string]uint64)}
	for _, l := range rec.GetLeases() {
		if _, dup := feed.leases[l.GetClaimId()]; dup {
			return fmt.Errorf("settlement feed record %q: claim %d leased twice", rec.GetGroup(), l.GetClaimId())
		}
		feed.leases[l.GetClaimId()] = lease{worker: l.GetWorker(), deadline: l.GetDeadlineUnixNano()}
	}
	for _, c := range rec.GetCampaignCursors() { // the campaigns are checked with the invariants
		if _, dup := feed.byCampaign[c.GetCampaignId()]; dup || !validID(c.GetCampaignId()) {
			return fmt.Errorf("settlement feed record %q: campaign cursor %v", rec.GetGroup(), c)
		}
		feed.byCampaign[c.GetCampaignId()] = c.GetCursor()
	}
	s.feeds[rec.GetGroup()] = feed
	return nil
}
