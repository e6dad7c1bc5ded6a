package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/flashd/flashd/fsm/fsmpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
)

// bufferSink is a raft.SnapshotSink in memory.
type bufferSink struct {
	bytes.Buffer
	failWrites bool
	closed     bool
	cancelled  bool
}

func (s *bufferSink) ID() string { return "test" }
func (s *bufferSink) Close() error {
	s.closed = true
	return nil
}
func (s *bufferSink) Cancel() error {
	s.cancelled = true
	return nil
}
func (s *bufferSink) Write(p []byte) (int, error) {
	if s.failWrites {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}

// persist snapshots f and returns the bytes.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed %v, cancelled %v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// restored returns a fresh FSM restored from data.
func restored(t testing.TB, data []byte, cfg Config) *FSM {
	t.Helper()
	cfg.CheckInvariants = true
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return f
}

// everyRecordKind builds a state holding every kind of record: campaigns of
// both kinds and every state, items, claims in every state, idempotency
// records of granted claims, refusals and operations, nodes and a config.
// Claims 1 to 7 are reserved, settled (2) or released (3); in campaign
// "quick" (a 1 s TTL) 8 and 10 are to compensate, 9 cancelling and 11
// ordering.
func everyRecordKind(t *testing.T) *harness {
	h := newHarness(t)
	h.openSale(10, func(b *fsmpb.CreateCampaign) {
		b.PerUserLimit = 2
		b.WaveCount = 3
		b.ReservationTtlNanos = int64(time.Minute)
		b.EndUnixNano = t0 + int64(time.Hour)
	})
	h.mustOK(addItem("c", "j", 3, 1))
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "cards", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_CARD_COLLECT, Name: "cards"}))
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "old", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE}))
	h.mustOK(setState("old", fsmpb.CampaignState_CAMPAIGN_STATE_CLOSED))
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "forever", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE}))
	h.mustOK(openCampaign("forever"))
	h.mustOK(addItem("forever", "i", 5, 0))
	h.mustOK(createCampaign(&fsmpb.CreateCampaign{CampaignId: "quick", Kind: fsmpb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, StartUnixNano: t0,
		ReservationTtlNanos: int64(time.Second)}))
	h.mustOK(openCampaign("quick"))
	h.mustOK(addItem("quick", "i", 5, 0))
	h.now += int64(2 * time.Hour) // past the end of "c": lift it
	h.mustOK(updateCampaign(&fsmpb.UpdateCampaign{CampaignId: "c", EndUnixNano: new(int64)}))
	for n, user := range []string{"a", "b", "c", "d", "e"} {
		h.mustClaim(claimReq(user, n))
	}
	inForever := claimReq("a", 9)
	inForever.CampaignId = "forever"
	h.mustClaim(inForever)
	h.mustClaim(&fsmpb.ClaimRequest{RequestId: "on-j", CampaignId: "c", ItemId: "j", UserId: "a", Quantity: 1})
	h.claim(&fsmpb.ClaimRequest{RequestId: "refused", CampaignId: "c", ItemId: "nope", UserId: "a", Quantity: 1})
	h.mustOK(withRequestID("settle-2", settle(2)))
	h.mustOK(release(3))
	quick := func(user string) *fsmpb.ClaimRequest {
		return &fsmpb.ClaimRequest{RequestId: "quick-" + user, CampaignId: "quick", ItemId: "i", UserId: user, Quantity: 1}
	}
	for _, user := range []string{"x", "y", "z"} {
		h.mustOK(markOrdering(h.mustClaim(quick(user)).ID))
	}
	h.now += int64(2 * time.Second)
	if res := h.mustOK(withRequestID("expire-quick", expire())); res.ToCompensate != 3 || res.Expired != 0 {
		t.Fatalf("expire: %+v, want 3 to compensate", res)
	}
	h.mustOK(withRequestID("cancel-9", markCancelling(9)))
	h.mustOK(withRequestID("order-11", markOrdering(h.mustClaim(quick("w")).ID)))
	h.mustOK(withRequestID("node", registerNode(&fsmpb.RegisterNode{NodeId: "n1", Region: "eu", GrpcAddr: "a:1", HttpAddr: "a:2"})))
	h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "n2", Region: "us"}))
	h.mustOK(setFrontDoor(&fsmpb.FrontDoorConfig{GlobalRate: 100, DegradeLevel: 1, DropFraction: 0.25}))
	h.now += int64(30 * time.Second)
	return h
}

// views collects everything the read API shows.
func views(f *FSM) map[string]any {
	v := map[string]any{
		"campaigns": f.Campaigns(), "items": f.Items(""), "nodes": f.Nodes(), "config": f.FrontDoorConfig(),
		"stats": f.Stats(), "reserved": f.ReservedClaims(100), "index": f.AppliedIndex(),
	}
	for id := uint64(1); id <= uint64(f.Stats().Claims); id++ {
		c, _ := f.Claim(id)
		v[fmt.Sprint("claim ", id)] = c
		v["by user "+c.UserID] = f.ClaimsByUser(c.UserID, "")
	}
	return v
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := everyRecordKind(t)
	data := persist(t, h.f)
	f := restored(t, data, Config{})
	wantDigest, wantIndex := h.f.Digest()
	if digest, index := f.Digest(); digest != wantDigest || index != wantIndex {
		t.Fatalf("restored digest %s at %d, want %s at %d", digest, index, wantDigest, wantIndex)
	}
	if got, want := views(f), views(h.f); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored views differ:\n got %v\nwant %v", got, want)
	}
	if st := f.Stats(); st.IdempotencyRecords != 17 || st.Claims != 11 || st.Campaigns != 5 {
		t.Errorf("restored stats %+v", st)
	}
	if again := persist(t, f); !bytes.Equal(again, data) {
		t.Error("a restored state does not snapshot to the same bytes")
	}
	// The rebuilt indexes behave as the originals: run the same commands on
	// both and compare.
	other := &harness{t: t, f: f, index: h.index, now: h.now}
	for _, x := range []*harness{h, other} {
		x.claim(claimReq("a", 0))                    // a retry
		x.claim(claimReq("a", 10))                   // a second claim of a on c/i: a holds 1 of 2
		x.claim(claimReq("a", 11))                   // limit reached
		x.one(withRequestID("settle-2", release(2))) // reused request ID
		x.one(withRequestID("node", registerNode(&fsmpb.RegisterNode{NodeId: "n1", Region: "eu", GrpcAddr: "a:1", HttpAddr: "a:2"})))
		x.now += int64(2 * time.Minute)
		if res := x.mustOK(expire()); res.Expired != 5 || res.ToCompensate != 1 {
			t.Errorf("expired %d, %d to compensate; want 5 and 1 (claim 11)", res.Expired, res.ToCompensate)
		}
	}
	if h.digest() != other.digest() {
		t.Fatal("original and restored FSMs diverged on the same commands")
	}
}

func TestSnapshotIsConsistentWhileApplyGoesOn(t *testing.T) {
	h := newHarness(t)
	h.openSale(5000, func(b *fsmpb.CreateCampaign) { b.ReservationTtlNanos = int64(time.Minute) })
	claimMany(h, "u", 2500) // three claim chunks
	wantDigest, _ := h.f.Digest()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Change claims in every chunk, add claims, evict idempotency records.
	for _, id := range []uint64{1, 1500, 2500} {
		h.mustOK(settle(id))
	}
	claimMany(h, "v", 1000)
	h.now += int64(time.Hour)
	h.mustOK(expire())
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if got, _ := restored(t, sink.Bytes(), Config{}).Digest(); got != wantDigest {
		t.Fatal("the snapshot saw applies made after it was taken")
	}
}

// claimMany grants n claims to new users named prefix0, prefix1, ..., in
// batches of 250.
func claimMany(h *harness, prefix string, n int) {
	h.t.Helper()
	for start := 0; start < n; start += 250 {
		var batch []*fsmpb.ClaimRequest
		for i := start; i < min(n, start+250); i++ {
			batch = append(batch, claimReq(fmt.Sprint(prefix, i), 0))
		}
		for _, out := range h.claims(batch...) {
			if out.Reason != ReasonOK {
				h.t.Fatalf("claim: %v (%s)", out.Reason, out.Message)
			}
		}
	}
}

func TestPersistCancelsOnError(t *testing.T) {
	h := everyRecordKind(t)
	snap, _ := h.f.Snapshot()
	sink := &bufferSink{failWrites: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist succeeded on a failing sink")
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("sink cancelled %v, closed %v: want cancelled only", sink.cancelled, sink.closed)
	}
}

func TestRestoreRefusesUnknownFormat(t *testing.T) {
	h := everyRecordKind(t)
	data := persist(t, h.f)
	var header fsmpb.SnapshotHeader
	r := bufio.NewReader(bytes.NewReader(data))
	if err := protodelim.UnmarshalFrom(r, &header); err != nil {
		t.Fatal(err)
	}
	header.FormatVersion = snapshotFormatVersion + 1
	var buf bytes.Buffer
	if _, err := protodelim.MarshalTo(&buf, &header); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	buf.Write(rest)

	f := everyRecordKind(t).f
	before, _ := f.Digest()
	err := f.Restore(io.NopCloser(&buf))
	if !errors.Is(err, ErrSnapshotVersion) {
		t.Fatalf("Restore of format %d: %v, want ErrSnapshotVersion", header.FormatVersion, err)
	}
	if after, _ := f.Digest(); after != before {
		t.Fatal("a failed restore changed the state")
	}
}

func TestRestoreRefusesCorruptSnapshots(t *testing.T) {
	data := persist(t, everyRecordKind(t).f)
	for name, corrupt := range map[string][]byte{
		"empty":           nil,
		"truncated":       data[:len(data)-3],
		"trailing record": append(append([]byte(nil), data...), data[:20]...),
		"garbage":         []byte("not a snapshot at all"),
	} {
		t.Run(name, func(t *testing.T) {
			f, _ := New(Config{})
			if err := f.Restore(io.NopCloser(bytes.NewReader(corrupt))); err == nil {
				t.Fatal("Restore succeeded")
			}
		})
	}
}

func TestRestoreChecksRecords(t *testing.T) {
	h := newHarness(t)
	h.openSale(5)
	h.mustClaim(claimReq("u", 1))
	snap, _ := h.f.Snapshot()
	v := snap.(*snapshot)
	v.items[0].reserved = 0 // the claim no longer agrees with the counters
	v.items[0].available = 5
	var sink bufferSink
	if err := v.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	f, _ := New(Config{})
	if err := f.Restore(io.NopCloser(&sink)); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("Restore: %v, want ErrSnapshotCorrupt", err)
	}
}

func TestRestoreNotifiesWatchers(t *testing.T) {
	data := persist(t, everyRecordKind(t).f)
	f, _ := New(Config{})
	ch := f.Changed()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by a restore")
	}
}

func TestNonCommandEntriesAdvanceTheIndex(t *testing.T) {
	f, _ := New(Config{CheckInvariants: true})
	before, _ := f.Digest()
	res := f.ApplyBatch([]*raft.Log{{Index: 7, Type: raft.LogConfiguration}, {Index: 8, Type: raft.LogNoop}})
	if len(res) != 2 || res[0] != nil || res[1] != nil {
		t.Fatalf("results %v, want two nils", res)
	}
	if f.Apply(&raft.Log{Index: 9, Type: raft.LogBarrier}) != nil {
		t.Fatal("Apply of a barrier returned a result")
	}
	if after, index := f.Digest(); after != before || index != 9 {
		t.Fatalf("digest changed %v, index %d: want unchanged at 9", after != before, index)
	}
}

// TestReadsAndPersistRunBesideApply reads every view and persists a snapshot
// from other goroutines while claims, settles and expiries are applied: run
// with -race, it shows the locking and the snapshot's sharing are sound.
func TestReadsAndPersistRunBesideApply(t *testing.T) {
	h := newHarness(t)
	h.openSale(1_000_000, func(b *fsmpb.CreateCampaign) { b.ReservationTtlNanos = int64(time.Second) })
	claimMany(h, "early", 1500)
	want := h.digest()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var sink bufferSink
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := snap.Persist(&sink); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-h.f.Changed():
			}
			h.f.Campaigns()
			h.f.Items("")
			h.f.ClaimsByUser("early7", "")
			h.f.Claim(3)
			h.f.ReservedClaims(10)
			h.f.Stats()
			h.f.Digest()
		}
	}()
	for n := range 20 {
		claimMany(h, fmt.Sprint("late", n, "-"), 50)
		h.mustOK(settle(uint64(1500 + 50*n))) // the batch's last claim
		h.now += int64(100 * time.Millisecond)
		h.mustOK(expire())
	}
	close(done)
	wg.Wait()
	if got, _ := restored(t, sink.Bytes(), Config{}).Digest(); got != want {
		t.Fatal("the snapshot persisted beside applies is not the state it was taken at")
	}
}
