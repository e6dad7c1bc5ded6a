package fsm

import (
	"math"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// sideRef marks a ref into idempotencyStore.side; a ref without it is the ID
// of a granted claim, whose record is the claim itself.
const sideRef = uint64(1) << 63

// indexSide marks a side record in the index, whose refs have refBits bits:
// there a side record is named by its position modulo indexSide. At most
// maxRecords (far below indexSide) records are queued, so those bits name
// one of them; a gone entry is purged long before the positions come round
// again (its shard is purged the next time it fills to 3/4). A granted
// claim's ID is its index ref as it is, which bounds claim IDs at indexSide.
const indexSide = uint64(1) << (refBits - 1)

// indexRef is the index's name for queue ref ref.
func indexRef(ref uint64) uint64 {
	if ref&sideRef != 0 {
		return ref&(indexSide-1) | indexSide
	}
	if ref >= indexSide {
		panic("fsm: claim IDs exhausted")
	}
	return ref
}

// queueRef is the queue ref of index ref x, which names a queued record.
func (st *idempotencyStore) queueRef(x uint64) uint64 {
	if x&indexSide != 0 {
		return (st.side.popped + (x-st.side.popped)&(indexSide-1)) | sideRef
	}
	return x
}

// idempotencyRecord is the first result of a request ID.
type idempotencyRecord struct {
	requestID   string
	payloadHash uint64
	time        int64 // command time, Unix nanoseconds
	claimID     uint64
	reason      Reason
	detail      uint64 // see Result.detail
}

// idempotencyStore keeps the first result of every request ID for a
// retention window by command time and up to a maximum count, evicting the
// oldest first. A granted claim is most of the records, and the claim record
// already holds its request ID, time and payload, so its idempotency record
// is just its ID in the queue; the side queue holds every other record in
// full. See DESIGN.md.
type idempotencyStore struct {
	order      fifo[uint64]            // every record's ref, oldest first
	side       fifo[idempotencyRecord] // records that are not a granted claim, oldest first
	index      *refIndex               // request ID → ref; evicted refs are dropped lazily
	claims     *claimTable
	claimFloor uint64 // granted claims below it are evicted (their IDs enter order increasing)
	retention  int64  // nanoseconds
	maxRecords int
}

func newIdempotencyStore(claims *claimTable, cfg Config) *idempotencyStore {
	st := &idempotencyStore{claims: claims, claimFloor: 1, retention: int64(cfg.IdempotencyRetention), maxRecords: cfg.IdempotencyMaxRecords}
	st.index = newRefIndex(func(x uint64) string { return st.requestIDOf(st.queueRef(x)) })
	st.index.gone = st.evicted
	return st
}

// evicted reports whether the record index ref x names has left the queues.
// Both kinds of ref enter order in increasing order and leave it from the
// front, so a ref below the front of its kind is gone for good.
func (st *idempotencyStore) evicted(x uint64) bool {
	if x&indexSide != 0 {
		return (x-st.side.popped)&(indexSide-1) >= uint64(st.side.len())
	}
	return x < st.claimFloor
}

func (st *idempotencyStore) len() int { return st.order.len() }

func (st *idempotencyStore) requestIDOf(ref uint64) string {
	if ref&sideRef != 0 {
		return st.side.at(ref &^ sideRef).requestID
	}
	return st.claims.requestID(st.claims.get(ref))
}

func (st *idempotencyStore) timeOf(ref uint64) int64 {
	if ref&sideRef != 0 {
		return st.side.at(ref &^ sideRef).time
	}
	return st.claims.get(ref).created
}

// record returns the record ref names.
func (st *idempotencyStore) record(ref uint64) idempotencyRecord {
	if ref&sideRef != 0 {
		return st.side.at(ref &^ sideRef)
	}
	t := st.claims
	c := t.get(ref)
	it := t.item(c)
	return idempotencyRecord{
		requestID: t.requestID(c), payloadHash: claimPayloadHash(it.campaign.id, it.id, t.userID(c), c.quantity),
		time: c.created, claimID: ref, reason: ReasonOK,
	}
}

// findRecord returns the live record of requestID, whose hash is h.
func findRecord[K text](st *idempotencyStore, h uint64, requestID K) (idempotencyRecord, bool) {
	ref, ok := lookup(st.index, h, requestID)
	if !ok {
		return idempotencyRecord{}, false
	}
	return st.record(st.queueRef(ref)), true
}

// addClaim records granted claim id as the first result of its request ID,
// which has hash h and no record yet.
func (st *idempotencyStore) addClaim(id, h uint64) {
	st.makeRoom()
	st.order.push(id)
	st.index.insert(h, indexRef(id))
}

// add records rec, which is not a granted claim; its request ID has hash h
// and no record yet.
func (st *idempotencyStore) add(rec idempotencyRecord, h uint64) {
	st.makeRoom()
	ref := st.side.push(rec) | sideRef
	st.order.push(ref)
	st.index.insert(h, indexRef(ref))
}

// expire evicts the records older than the retention window at command time
// now (never the wall clock, so every replica evicts the same ones).
func (st *idempotencyStore) expire(now int64) {
	cutoff := now - st.retention // command time is never negative, so this cannot wrap
	for st.order.len() > 0 && st.timeOf(st.order.front()) < cutoff {
		st.evictOldest()
	}
}

func (st *idempotencyStore) makeRoom() {
	for st.order.len() >= st.maxRecords {
		st.evictOldest()
	}
}

// evictOldest drops the oldest record. Its index entry stays until a later
// insert or purge reclaims the slot (evicted says it is gone): removing it
// here would hash its request ID and miss the cache at its slot, once per
// claim when the store is full.
func (st *idempotencyStore) evictOldest() {
	ref := st.order.front()
	st.order.pop()
	if ref&sideRef != 0 {
		if ref&^sideRef != st.side.popped {
			panic("fsm: invariant broken: idempotency queues out of step")
		}
		st.side.pop()
	} else {
		if ref < st.claimFloor {
			panic("fsm: invariant broken: idempotency queue holds claims out of order")
		}
		st.claimFloor = ref + 1
	}
	st.index.forget()
}

// Payload hashes: FNV-1a 64 over the command type and the body's fields, in
// a fixed order, each string preceded by its length. Stored in snapshots, so
// the recipe must not change.

func hashUint(h, v uint64) uint64 {
	for range 8 {
		h ^= v & 0xff
		h *= fnv64Prime
		v >>= 8
	}
	return h
}

func hashText[K text](h uint64, s K) uint64 {
	h = hashUint(h, uint64(len(s)))
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnv64Prime
	}
	return h
}

func hashBool(h uint64, b bool) uint64 {
	if b {
		return hashUint(h, 1)
	}
	return hashUint(h, 0)
}

func claimPayloadHash[K text](campaignID, itemID, userID K, quantity uint32) uint64 {
	h := hashUint(fnv64Offset, uint64(fsmpb.CommandType_COMMAND_TYPE_CLAIM_BATCH))
	h = hashText(h, campaignID)
	h = hashText(h, itemID)
	h = hashText(h, userID)
	return hashUint(h, uint64(quantity))
}

// commandPayloadHash hashes a single-operation command: its type and the
// fields of its body (a front-door config's version is the state machine's,
// so it is left out).
func commandPayloadHash(cmd *fsmpb.Command) uint64 {
	h := hashUint(fnv64Offset, uint64(cmd.GetType()))
	switch cmd.GetType() {
	case fsmpb.CommandType_COMMAND_TYPE_CREATE_CAMPAIGN:
		b := cmd.GetCreateCampaign()
		h = hashText(h, b.GetCampaignId())
		h = hashUint(h, uint64(b.GetKind()))
		h = hashText(h, b.GetName())
		h = hashUint(h, uint64(b.GetStartUnixNano()))
		h = hashUint(h, uint64(b.GetEndUnixNano()))
		h = hashUint(h, uint64(b.GetPerUserLimit()))
		h = hashUint(h, uint64(b.GetWaveCount()))
		h = hashUint(h, uint64(b.GetWaveIntervalNanos()))
		h = hashUint(h, uint64(b.GetReservationTtlNanos()))
	case fsmpb.CommandType_COMMAND_TYPE_UPDATE_CAMPAIGN:
		b := cmd.GetUpdateCampaign()
		h = hashText(h, b.GetCampaignId())
		h = hashBool(h, b.State != nil)
		h = hashUint(h, uint64(b.GetState()))
		h = hashBool(h, b.StartUnixNano != nil)
		h = hashUint(h, uint64(b.GetStartUnixNano()))
		h = hashBool(h, b.EndUnixNano != nil)
		h = hashUint(h, uint64(b.GetEndUnixNano()))
	case fsmpb.CommandType_COMMAND_TYPE_ADD_ITEM:
		b := cmd.GetAddItem()
		h = hashText(h, b.GetCampaignId())
		h = hashText(h, b.GetItemId())
		h = hashUint(h, b.GetStock())
		h = hashUint(h, uint64(b.GetPerUserLimit()))
	case fsmpb.CommandType_COMMAND_TYPE_ADJUST_STOCK:
		b := cmd.GetAdjustStock()
		h = hashText(h, b.GetCampaignId())
		h = hashText(h, b.GetItemId())
		h = hashUint(h, uint64(b.GetDelta()))
	case fsmpb.CommandType_COMMAND_TYPE_SETTLE:
		h = hashUint(h, cmd.GetSettle().GetClaimId())
	case fsmpb.CommandType_COMMAND_TYPE_RELEASE:
		h = hashUint(h, cmd.GetRelease().GetClaimId())
	case fsmpb.CommandType_COMMAND_TYPE_MARK_ORDERING:
		h = hashUint(h, cmd.GetMarkOrdering().GetClaimId())
	case fsmpb.CommandType_COMMAND_TYPE_MARK_CANCELLING:
		h = hashUint(h, cmd.GetMarkCancelling().GetClaimId())
	case fsmpb.CommandType_COMMAND_TYPE_REGISTER_NODE:
		b := cmd.GetRegisterNode()
		h = hashText(h, b.GetNodeId())
		h = hashText(h, b.GetRegion())
		h = hashText(h, b.GetGrpcAddr())
		h = hashText(h, b.GetHttpAddr())
		h = hashBool(h, b.GetRemoved())
	case fsmpb.CommandType_COMMAND_TYPE_SET_FRONT_DOOR_CONFIG:
		c := cmd.GetSetFrontDoorConfig().GetConfig()
		h = hashBool(h, c != nil)
		h = hashUint(h, math.Float64bits(c.GetGlobalRate()))
		h = hashUint(h, math.Float64bits(c.GetPerUserRate()))
		h = hashUint(h, math.Float64bits(c.GetPerIpRate()))
		h = hashUint(h, uint64(c.GetDegradeLevel()))
		h = hashUint(h, math.Float64bits(c.GetDropFraction()))
		h = hashBool(h, c.GetDegradeAuto())
	case fsmpb.CommandType_COMMAND_TYPE_DEFINE_CARDS:
		b := cmd.GetDefineCards()
		h = hashText(h, b.GetCampaignId())
		h = hashUint(h, uint64(len(b.GetTypes())))
		for _, t := range b.GetTypes() {
			h = hashText(h, t.GetTypeId())
			h = hashUint(h, t.GetWeight())
			h = hashUint(h, t.GetCap())
		}
		h = hashUint(h, uint64(len(b.GetSetTypes())))
		for _, id := range b.GetSetTypes() {
			h = hashText(h, id)
		}
		h = hashUint(h, b.GetRewardPool())
		h = hashUint(h, b.GetPotCents())
		h = hashUint(h, b.GetDrawsPerUserMax())
	case fsmpb.CommandType_COMMAND_TYPE_GRANT_DRAWS:
		b := cmd.GetGrantDraws()
		h = hashText(h, b.GetCampaignId())
		h = hashText(h, b.GetUserId())
		h = hashUint(h, uint64(b.GetCount()))
	case fsmpb.CommandType_COMMAND_TYPE_DRAW_CARD:
		h = hashText(h, cmd.GetDrawCard().GetCampaignId())
		h = hashText(h, cmd.GetDrawCard().GetUserId())
	case fsmpb.CommandType_COMMAND_TYPE_REDEEM_SET:
		h = hashText(h, cmd.GetRedeemSet().GetCampaignId())
		h = hashText(h, cmd.GetRedeemSet().GetUserId())
	case fsmpb.CommandType_COMMAND_TYPE_CLOSE_AND_SPLIT:
		h = hashText(h, cmd.GetCloseAndSplit().GetCampaignId())
	case fsmpb.CommandType_COMMAND_TYPE_LEASE_CLAIMS:
		b := cmd.GetLeaseClaims()
		h = hashText(h, b.GetGroup())
		h = hashText(h, b.GetWorker())
		h = hashUint(h, uint64(b.GetMax()))
		h = hashUint(h, uint64(b.GetLeaseNanos()))
		for _, c := range b.GetCampaigns() { // none: the hash of before the field
			h = hashText(h, c)
		}
	}
	return h
}
