package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

const (
	// snapshotFormatVersion is written in every snapshot header. Version 2
	// added the claim states ORDERING, TO_COMPENSATE and CANCELLING;
	// Restore also reads version 1 (the same records, without them) and
	// refuses any other.
	snapshotFormatVersion = 2
	snapshotFormatV1      = 1
	// restoreReserveMax bounds how many index entries a restore sizes for
	// from the header's counts before reading the records.
	restoreReserveMax = 1 << 24
)

// snapshot is a consistent, read-only view of the state at one index. Taking
// it copies the small parts (campaigns, items, nodes) and the chunk lists of
// the big ones (claims, idempotency queues); later applies copy a claim
// chunk before writing to it and never rewrite a queued element, so Persist
// can read the view while they run.
type snapshot struct {
	appliedIndex uint64
	clock        int64
	frontDoor    FrontDoorConfig
	campaigns    []campaign // copies; only their own fields are read
	items        []item     // copies in campaign then item order
	claims       claimTable
	idempotency  idempotencyStore // queues are views; reads through claims above
	nodes        []Node
	// Card campaigns and settlement feeds, as records: built whole when the
	// view is taken (see DESIGN.md, "Card-collect").
	cardCollects []*fsmpb.CardCollectRecord
	cardHolders  []*fsmpb.CardHolderRecord
	feeds        []*fsmpb.SettlementFeedRecord
}

var _ raft.FSMSnapshot = (*snapshot)(nil)

// Snapshot returns a view of the current state for raft to persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s.view(), nil
}

func (s *state) view() *snapshot {
	v := &snapshot{
		appliedIndex: s.appliedIndex, clock: s.clock, frontDoor: s.frontDoor,
		claims: s.claims.view(), nodes: s.sortedNodes(),
	}
	for _, c := range s.campaignOrder {
		v.campaigns = append(v.campaigns, campaign{
			id: c.id, name: c.name, kind: c.kind, state: c.state, start: c.start, end: c.end,
			perUserLimit: c.perUserLimit, waveCount: c.waveCount, waveInterval: c.waveInterval, reservationTTL: c.reservationTTL,
		})
		for _, it := range c.itemOrder {
			v.items = append(v.items, *it)
		}
		if c.cards != nil {
			rec, holders := cardRecords(c)
			v.cardCollects = append(v.cardCollects, rec)
			v.cardHolders = append(v.cardHolders, holders...)
		}
	}
	v.feeds = s.feedRecords()
	v.idempotency = idempotencyStore{order: s.idempotency.order.view(), side: s.idempotency.side.view(), claims: &v.claims}
	return v
}

// Persist writes the snapshot: a header, then one record per campaign, item,
// claim, idempotency record and node, each length-delimited.
func (v *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	err := v.write(w, true)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel() // the write error is the one worth returning
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release does nothing: the view holds no resources but memory.
func (v *snapshot) Release() {}

// write encodes the view. Without idempotency records it encodes the
// business state only (tests use it to show a refusal changed nothing but
// its own record).
func (v *snapshot) write(w io.Writer, idempotency bool) error {
	header := &fsmpb.SnapshotHeader{
		FormatVersion: snapshotFormatVersion, Campaigns: uint64(len(v.campaigns)), Items: uint64(len(v.items)),
		Claims: v.claims.len(), Nodes: uint64(len(v.nodes)), NextClaimId: v.claims.len() + 1,
		LastCommandUnixNano: v.clock, FrontDoorConfig: frontDoorToRecord(v.frontDoor), AppliedIndex: v.appliedIndex,
		CardCollects: uint64(len(v.cardCollects)), CardHolders: uint64(len(v.cardHolders)), SettlementFeeds: uint64(len(v.feeds)),
	}
	if idempotency {
		header.IdempotencyRecords = uint64(v.idempotency.len())
	}
	rw := recordWriter{w: w}
	rw.write(header)
	for i := range v.campaigns {
		rw.write(&fsmpb.SnapshotRecord{Campaign: campaignToRecord(&v.campaigns[i])})
	}
	for i := range v.items {
		rw.write(&fsmpb.SnapshotRecord{Item: itemToRecord(&v.items[i])})
	}
	v.writeClaims(&rw)
	if idempotency {
		v.writeIdempotency(&rw)
	}
	for _, n := range v.nodes {
		rw.write(&fsmpb.SnapshotRecord{Node: &fsmpb.RegisterNode{NodeId: n.ID, Region: n.Region, GrpcAddr: n.GRPCAddr, HttpAddr: n.HTTPAddr}})
	}
	for _, rec := range v.cardCollects {
		rw.write(&fsmpb.SnapshotRecord{CardCollect: rec})
	}
	for _, rec := range v.cardHolders {
		rw.write(&fsmpb.SnapshotRecord{CardHolder: rec})
	}
	for _, rec := range v.feeds {
		rw.write(&fsmpb.SnapshotRecord{SettlementFeed: rec})
	}
	return rw.err
}

// writeClaims writes every claim, reusing one message: there can be
// millions.
func (v *snapshot) writeClaims(rw *recordWriter) {
	rec := &fsmpb.SnapshotRecord{Claim: &fsmpb.ClaimRecord{}}
	for id := uint64(1); id <= v.claims.len() && rw.err == nil; id++ {
		c := v.claims.get(id)
		it := v.claims.item(c)
		*rec.Claim = fsmpb.ClaimRecord{
			ClaimId: id, CampaignId: it.campaign.id, ItemId: it.id, UserId: v.claims.userID(c), Quantity: c.quantity,
			State: fsmpb.ClaimState(c.state), CreatedUnixNano: c.created, DeadlineUnixNano: v.claims.deadline(c),
			RequestId: v.claims.requestID(c),
		}
		rw.write(rec)
	}
}

// writeIdempotency writes the idempotency records, oldest first: a granted
// claim's as its ID alone, every other in full.
func (v *snapshot) writeIdempotency(rw *recordWriter) {
	granted := &fsmpb.SnapshotRecord{}
	other := &fsmpb.SnapshotRecord{Idempotency: &fsmpb.IdempotencyRecord{}}
	v.idempotency.order.each(func(ref uint64) bool {
		if ref&sideRef == 0 {
			granted.GrantedClaim = ref
			rw.write(granted)
			return rw.err == nil
		}
		r := v.idempotency.side.at(ref &^ sideRef)
		*other.Idempotency = fsmpb.IdempotencyRecord{
			RequestId: r.requestID, PayloadHash: r.payloadHash, TimeUnixNano: r.time, Reason: uint32(r.reason), ClaimId: r.claimID,
			Detail: r.detail,
		}
		rw.write(other)
		return rw.err == nil
	})
}

// recordWriter writes length-delimited records and keeps the first error.
type recordWriter struct {
	w   io.Writer
	err error
}

func (rw *recordWriter) write(m proto.Message) {
	if rw.err != nil {
		return
	}
	_, rw.err = protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}.MarshalTo(rw.w, m)
}

func campaignToRecord(c *campaign) *fsmpb.CampaignRecord {
	return &fsmpb.CampaignRecord{
		Campaign: &fsmpb.CreateCampaign{
			CampaignId: c.id, Kind: fsmpb.CampaignKind(c.kind), Name: c.name, StartUnixNano: c.start, EndUnixNano: c.end,
			PerUserLimit: c.perUserLimit, WaveCount: c.waveCount, WaveIntervalNanos: c.waveInterval, ReservationTtlNanos: c.reservationTTL,
		},
		State: fsmpb.CampaignState(c.state),
	}
}

func itemToRecord(it *item) *fsmpb.ItemRecord {
	return &fsmpb.ItemRecord{
		CampaignId: it.campaign.id, ItemId: it.id, Total: it.total, Available: it.available,
		Reserved: it.reserved, Sold: it.sold, PerUserLimit: it.perUserLimit,
	}
}

// Digest returns a SHA-256 over all state (everything a snapshot holds but
// the applied index, which it returns beside), and the index it reflects.
// Replicas at the same index have the same digest.
func (f *FSM) Digest() (digest string, index uint64) {
	f.mu.Lock()
	v := f.s.view()
	f.mu.Unlock()
	return v.digest(true), v.appliedIndex
}

func (v *snapshot) digest(idempotency bool) string {
	index := v.appliedIndex
	v.appliedIndex = 0
	defer func() { v.appliedIndex = index }()
	h := sha256.New()
	w := bufio.NewWriter(h)
	if err := v.write(w, idempotency); err != nil {
		panic(fmt.Sprintf("fsm: digest: %v", err)) // a hash never fails to write
	}
	if err := w.Flush(); err != nil {
		panic(fmt.Sprintf("fsm: digest: %v", err))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Restore replaces all state with the snapshot read from rc. The old state
// stays in place if the snapshot cannot be read.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := readSnapshot(bufio.NewReaderSize(rc, 1<<20), f.cfg)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s = s
	f.s.changed = true
	f.notifyChanged()
	return nil
}

func readSnapshot(r *bufio.Reader, cfg Config) (*state, error) {
	var header fsmpb.SnapshotHeader
	if err := protodelim.UnmarshalFrom(r, &header); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	// The last claim state the snapshot's version knows.
	var lastState ClaimState
	switch header.GetFormatVersion() {
	case snapshotFormatV1:
		lastState = ClaimReleased
	case snapshotFormatVersion:
		lastState = claimStates - 1
	default:
		return nil, fmt.Errorf("%w: %d", ErrSnapshotVersion, header.GetFormatVersion())
	}
	s := newState(cfg)
	s.clock, s.appliedIndex = header.GetLastCommandUnixNano(), header.GetAppliedIndex()
	// Size the indexes once rather than growing them record by record
	// (bounded, so a corrupt header cannot make the node allocate wildly).
	s.users.reserve(min(header.GetClaims(), restoreReserveMax))
	s.idempotency.index.reserve(min(header.GetIdempotencyRecords(), restoreReserveMax))
	if header.FrontDoorConfig != nil {
		s.frontDoor = frontDoorFromRecord(header.FrontDoorConfig)
	}
	counts := []uint64{
		header.GetCampaigns(), header.GetItems(), header.GetClaims(), header.GetIdempotencyRecords(), header.GetNodes(),
		header.GetCardCollects(), header.GetCardHolders(), header.GetSettlementFeeds(),
	}
	rr := recordReader{r: r}
	for kind, n := range counts {
		for range n {
			rec := rr.next()
			if rr.err != nil {
				return nil, rr.err
			}
			if err := s.restoreRecord(kind, rec, lastState); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrSnapshotCorrupt, err)
			}
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the last record", ErrSnapshotCorrupt)
	}
	if header.GetNextClaimId() != s.claims.len()+1 {
		return nil, fmt.Errorf("%w: next claim ID %d, claims %d", ErrSnapshotCorrupt, header.GetNextClaimId(), s.claims.len())
	}
	if err := s.checkInvariants(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotCorrupt, err)
	}
	return s, nil
}

// recordReader reads length-delimited records, reusing one message.
type recordReader struct {
	r   *bufio.Reader
	rec fsmpb.SnapshotRecord
	err error
}

func (rr *recordReader) next() *fsmpb.SnapshotRecord {
	if err := protodelim.UnmarshalFrom(rr.r, &rr.rec); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		rr.err = fmt.Errorf("read record: %w", err)
	}
	return &rr.rec
}

// Record kinds in snapshot order, as indexes into readSnapshot's counts.
const (
	recordCampaign = iota
	recordItem
	recordClaim
	recordIdempotency
	recordNode
	recordCardCollect
	recordCardHolder
	recordSettlementFeed
)

// restoreRecord restores one record of the given kind; lastState is the
// last claim state the snapshot's format version knows.
func (s *state) restoreRecord(kind int, rec *fsmpb.SnapshotRecord, lastState ClaimState) error {
	switch {
	case kind == recordCampaign && rec.Campaign != nil:
		return s.restoreCampaign(rec.Campaign)
	case kind == recordItem && rec.Item != nil:
		return s.restoreItem(rec.Item)
	case kind == recordClaim && rec.Claim != nil:
		return s.restoreClaim(rec.Claim, lastState)
	case kind == recordIdempotency && rec.GrantedClaim != 0:
		return s.restoreGrantedClaimRecord(rec.GrantedClaim)
	case kind == recordIdempotency && rec.Idempotency != nil:
		return s.restoreIdempotency(rec.Idempotency)
	case kind == recordNode && rec.Node != nil:
		s.nodes[rec.Node.GetNodeId()] = nodeFromRecord(rec.Node)
		return nil
	case kind == recordCardCollect && rec.CardCollect != nil:
		return s.restoreCardCollect(rec.CardCollect)
	case kind == recordCardHolder && rec.CardHolder != nil:
		return s.restoreCardHolder(rec.CardHolder)
	case kind == recordSettlementFeed && rec.SettlementFeed != nil:
		return s.restoreFeed(rec.SettlementFeed)
	}
	return fmt.Errorf("record %v is not the kind expected next (%d)", rec, kind)
}

func (s *state) restoreCampaign(rec *fsmpb.CampaignRecord) error {
	b := rec.GetCampaign()
	kind, kindOK := campaignKind(b.GetKind())
	state, stateOK := campaignState(rec.GetState())
	if b == nil || !kindOK || !stateOK || s.campaigns[b.GetCampaignId()] != nil {
		return fmt.Errorf("campaign record %v", rec)
	}
	s.addCampaign(&campaign{
		id: b.GetCampaignId(), name: b.GetName(), kind: kind, state: state,
		start: b.GetStartUnixNano(), end: b.GetEndUnixNano(), perUserLimit: b.GetPerUserLimit(),
		waveCount: b.GetWaveCount(), waveInterval: b.GetWaveIntervalNanos(), reservationTTL: b.GetReservationTtlNanos(),
		items: make(map[string]*item),
	})
	return nil
}

func (s *state) restoreItem(rec *fsmpb.ItemRecord) error {
	c := s.campaigns[rec.GetCampaignId()]
	if c == nil || c.items[rec.GetItemId()] != nil {
		return fmt.Errorf("item record %v", rec)
	}
	it := &item{
		campaign: c, id: rec.GetItemId(), perUserLimit: rec.GetPerUserLimit(),
		total: rec.GetTotal(), available: rec.GetAvailable(), reserved: rec.GetReserved(), sold: rec.GetSold(),
	}
	it.number = s.claims.addItem(it)
	c.addItem(it)
	return nil
}

func (s *state) restoreClaim(rec *fsmpb.ClaimRecord, lastState ClaimState) error {
	it := s.item(rec.GetCampaignId(), rec.GetItemId())
	if it == nil || rec.GetClaimId() != s.claims.len()+1 || !validID(rec.GetRequestId()) || !validID(rec.GetUserId()) ||
		rec.GetState() <= fsmpb.ClaimState_CLAIM_STATE_UNKNOWN || rec.GetState() > fsmpb.ClaimState(lastState) {
		return fmt.Errorf("claim record %v", rec)
	}
	latest, userHash, _ := findRef(s.users, rec.GetUserId())
	id := addClaim(&s.claims, claimRecord{
		created: rec.GetCreatedUnixNano(), prevByUser: latest, item: it.number,
		quantity: rec.GetQuantity(), state: ClaimState(rec.GetState()),
	}, rec.GetRequestId(), rec.GetUserId())
	c := s.claims.get(id)
	if s.claims.deadline(c) != rec.GetDeadlineUnixNano() {
		return fmt.Errorf("claim record %v: deadline does not follow from the campaign's TTL", rec)
	}
	if latest == 0 {
		s.users.insert(userHash, id)
	} else {
		s.users.replace(userHash, latest, id)
	}
	if c.expiring() && s.claims.deadline(c) != 0 {
		it.campaign.expiring.push(id)
	}
	return nil
}

// restoreGrantedClaimRecord re-creates the idempotency record of granted
// claim id. A request ID recorded twice is caught by the invariant check
// that ends every restore.
func (s *state) restoreGrantedClaimRecord(id uint64) error {
	c := s.claims.get(id)
	if c == nil {
		return fmt.Errorf("idempotency record of claim %d: no such claim", id)
	}
	s.idempotency.addClaim(id, hashKey(s.idempotency.index, s.claims.requestID(c)))
	return nil
}

// restoreIdempotency re-creates a record that is not a granted claim's.
func (s *state) restoreIdempotency(rec *fsmpb.IdempotencyRecord) error {
	r := idempotencyRecord{
		requestID: rec.GetRequestId(), payloadHash: rec.GetPayloadHash(), time: rec.GetTimeUnixNano(),
		claimID: rec.GetClaimId(), reason: Reason(rec.GetReason()), detail: rec.GetDetail(),
	}
	if !validID(r.requestID) || int(r.reason) >= len(reasonNames) || (r.claimID != 0 && s.claims.get(r.claimID) == nil) {
		return fmt.Errorf("idempotency record %v", rec)
	}
	s.idempotency.add(r, hashKey(s.idempotency.index, r.requestID))
	return nil
}
