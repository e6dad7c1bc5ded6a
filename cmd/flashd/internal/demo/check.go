package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Bounds of the invariant check.
const (
	convergeTimeout = 30 * time.Second
	checkTimeout    = 2 * time.Minute
	checkWorkers    = 8
	sampleUsers     = 500 // users without an acknowledged claim whose claims are read back
)

// checkResult is one invariant, checked against what the store says.
type checkResult struct {
	name   string
	ok     bool
	detail string
}

// storeView is what the store holds at the end of the sale.
type storeView struct {
	items        []*pb.Item
	index        uint64 // applied index the replicas agree on
	digest       string
	claimRecords uint64
	lostAnswers  int // claims held for users who never got the answer (sample)
}

// checkInvariants reads the store back: the replicas agree, no item is
// oversold, every acknowledged claim is there, and no user is over the
// per-user limit.
func checkInvariants(ctx context.Context, s *client.Store, campaign string, items []string, stock []uint64,
	limit uint32, acks []ack, others []string,
) ([]checkResult, storeView) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var results []checkResult
	var sv storeView
	add := func(name string, ok bool, format string, args ...any) {
		results = append(results, checkResult{name, ok, fmt.Sprintf(format, args...)})
	}

	// 1. Every replica has applied the same log to the same state.
	st, err := converged(ctx, s)
	agree := err == nil
	if !agree {
		add("replicas agree", false, "%v", err)
	} else {
		sv.index, sv.digest, sv.claimRecords = st.GetMembers()[0].GetStatus().GetAppliedIndex(), st.GetMembers()[0].GetStatus().GetDigest(), st.GetMembers()[0].GetStatus().GetClaims()
		add("replicas agree", true, "%d members at applied index %d, state digest %s", len(st.GetMembers()), sv.index, short(sv.digest))
	}

	// 2. No oversell: the counters of every item add up (linearizable reads).
	var held uint64
	oversellOK, detail := true, ""
	for i, name := range items {
		res, err := s.GetItem(ctx, &pb.GetItemRequest{CampaignId: campaign, ItemId: name})
		if err != nil {
			oversellOK, detail = false, fmt.Sprintf("read %s: %v", name, err)
			break
		}
		it := res.GetItem()
		sv.items = append(sv.items, it)
		held += it.GetReserved() + it.GetSold()
		if it.GetTotal() != stock[i] || it.GetAvailable()+it.GetReserved()+it.GetSold() != it.GetTotal() || it.GetReserved()+it.GetSold() > it.GetTotal() {
			oversellOK = false
			detail += fmt.Sprintf("%s: total %d (created with %d) != available %d + reserved %d + sold %d; ",
				name, it.GetTotal(), stock[i], it.GetAvailable(), it.GetReserved(), it.GetSold())
		}
	}
	if oversellOK {
		detail = fmt.Sprintf("%d items: available + reserved + sold == stock, %d units held", len(items), held)
		if agree && sv.claimRecords != held {
			oversellOK = false
			detail = fmt.Sprintf("%d claim records but %d units held", sv.claimRecords, held)
		}
	}
	add("no oversell", oversellOK, "%s", detail)

	// 3. Every acknowledged claim is in the store, and 4. no user holds
	// more than the limit on an item: each acknowledged user's claims, and
	// a sample of the others', read back from the leader.
	perItem := make([]int, len(items))
	for _, a := range acks {
		perItem[a.item]++
	}
	countOK, countDetail := true, ""
	for i, it := range sv.items {
		if uint64(perItem[i]) > it.GetReserved()+it.GetSold() {
			countOK = false
			countDetail += fmt.Sprintf("%s: %d acknowledged, %d held; ", items[i], perItem[i], it.GetReserved()+it.GetSold())
		}
	}
	missing, over, lost, readErr := readBack(ctx, s, campaign, limit, acks, others)
	switch {
	case readErr != nil:
		add("every acknowledged claim present", false, "%v", readErr)
	case len(missing) > 0 || !countOK:
		add("every acknowledged claim present", false, "%d of %d missing (first: %s) %s", len(missing), len(acks), first(missing), countDetail)
	default:
		add("every acknowledged claim present", true, "%d of %d found by claim ID (ListClaims per user)", len(acks), len(acks))
	}
	sv.lostAnswers = lost
	checked := len(acks) + len(others)
	if readErr == nil {
		add("no user over the per-user limit", len(over) == 0, "%d users read back (%d acknowledged, %d sampled), limit %d per item%s",
			checked, len(acks), len(others), limit, overDetail(over))
	}
	return results, sv
}

// converged waits until every member answers with the same applied index
// and state digest.
func converged(ctx context.Context, s *client.Store) (*pb.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	var last string
	for {
		st, err := s.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err == nil {
			same := len(st.GetMembers()) > 0
			var first *pb.NodeStatusResponse
			for _, m := range st.GetMembers() {
				ns := m.GetStatus()
				switch {
				case ns == nil:
					same, last = false, fmt.Sprintf("%s does not answer: %s", m.GetId(), m.GetError())
				case ns.GetDigestIndex() != ns.GetAppliedIndex():
					same, last = false, fmt.Sprintf("%s's digest covers index %d, not yet %d", m.GetId(), ns.GetDigestIndex(), ns.GetAppliedIndex())
				case first == nil:
					first = ns
				case ns.GetAppliedIndex() != first.GetAppliedIndex() || ns.GetDigest() != first.GetDigest():
					same = false
					last = fmt.Sprintf("%s at %d/%s, %s at %d/%s", first.GetId(), first.GetAppliedIndex(), short(first.GetDigest()),
						ns.GetId(), ns.GetAppliedIndex(), short(ns.GetDigest()))
				}
			}
			if same {
				return st, nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("replicas did not converge within %v: %s", convergeTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readBack lists the claims of every acknowledged user and of the sampled
// others. It returns the acknowledged claims not found, the users over the
// limit, and how many sampled users hold a claim they never heard of.
func readBack(ctx context.Context, s *client.Store, campaign string, limit uint32, acks []ack, others []string) (missing, over []string, lost int, err error) {
	type job struct {
		user string
		want *pb.Claim // nil for a sampled user
	}
	jobs := make(chan job)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range checkWorkers {
		wg.Go(func() {
			for j := range jobs {
				res, err := s.ListClaims(ctx, &pb.ListClaimsRequest{UserId: j.user, CampaignId: campaign})
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("list claims of %s: %w", j.user, err)
					}
					mu.Unlock()
					continue
				}
				live := map[string]uint32{}
				found := j.want == nil
				for _, c := range res.GetClaims() {
					if c.GetState() != pb.ClaimState_CLAIM_STATE_RELEASED {
						live[c.GetItemId()] += c.GetQuantity()
					}
					if j.want != nil && c.GetId() == j.want.GetId() && c.GetItemId() == j.want.GetItemId() {
						found = true
					}
				}
				if !found {
					missing = append(missing, fmt.Sprintf("claim %d of %s", j.want.GetId(), j.user))
				}
				if j.want == nil && len(res.GetClaims()) > 0 {
					lost++
				}
				for item, q := range live {
					if q > limit {
						over = append(over, fmt.Sprintf("%s holds %d of %s", j.user, q, item))
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, a := range acks {
		jobs <- job{user: a.user, want: a.claim}
	}
	for _, u := range others {
		jobs <- job{user: u}
	}
	close(jobs)
	wg.Wait()
	return missing, over, lost, firstErr
}

// sampleOthers picks up to n users who pressed and got no acknowledged
// claim.
func sampleOthers(users []*user, acked map[string]bool, n int) []string {
	var pool []string
	for _, u := range users {
		if u.presses > 0 && !acked[u.id] {
			pool = append(pool, u.id)
		}
	}
	rand.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	return pool[:min(n, len(pool))]
}

func overDetail(over []string) string {
	if len(over) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d over, first: %s", len(over), over[0])
}

func first(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return s[0]
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
