package frontdoor

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// EntryWave returns the entry wave of a user: the 32-bit FNV-1a hash of the
// user ID's bytes modulo waveCount, 0 when waveCount <= 1. It is the store's
// function (fsm.EntryWave), written again because the front door does not
// import the state machine; a test in cmd/flashd proves they agree.
func EntryWave(userID string, waveCount uint32) uint32 {
	if waveCount <= 1 {
		return 0
	}
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(userID); i++ {
		h ^= uint32(userID[i])
		h *= prime32
	}
	return h % waveCount
}

// clockSkewAllowance lets claims through to the store this long before the
// front door's clock says a campaign or a wave opens: the store's leader
// stamps the time that counts, and a front door whose clock runs a little
// behind must not refuse what the store would grant. The store refuses what
// is still early.
const clockSkewAllowance = 200 * time.Millisecond

// itemKey names an item. Looking it up in a map allocates nothing.
type itemKey struct{ campaign, item string }

// catalog is the front door's view of the campaigns and items, kept from
// the store's Watch stream and from batch results. Everything in it is a
// hint: it turns away what the store would refuse, and the store decides.
//
// Reads are lock-free: the maps are replaced whole when a campaign or item
// appears (rare), and each entry's fields are atomics.
type catalog struct {
	mu     sync.Mutex // serializes writers
	view   atomic.Pointer[catalogView]
	synced atomic.Bool // the watch stream delivered the full state and is connected
}

type catalogView struct {
	campaigns map[string]*campaignEntry
	items     map[itemKey]*itemEntry
}

type campaignEntry struct {
	id   string
	info atomic.Pointer[campaignInfo]
}

// campaignInfo is what validation needs of a campaign. Replaced whole.
type campaignInfo struct {
	kind         pb.CampaignKind
	state        pb.CampaignState
	start, end   int64 // Unix nanoseconds; end 0: no end
	waveCount    uint32
	waveInterval int64 // nanoseconds
	perUserLimit uint32
}

type itemEntry struct {
	key      itemKey
	campaign *campaignEntry

	soldOut      atomic.Bool
	available    atomic.Uint64
	total        atomic.Uint64
	perUserLimit atomic.Uint32 // effective limit, 0 until known
	index        atomic.Uint64 // log index of the latest stock information

	mu sync.Mutex // orders updates of soldOut and index
}

func newCatalog() *catalog {
	c := &catalog{}
	c.view.Store(&catalogView{campaigns: map[string]*campaignEntry{}, items: map[itemKey]*itemEntry{}})
	return c
}

func (c *catalog) campaign(id string) *campaignEntry { return c.view.Load().campaigns[id] }

func (c *catalog) item(campaign, item string) *itemEntry {
	return c.view.Load().items[itemKey{campaign, item}]
}

// campaignEntry returns the entry of id, adding it if new. c.mu held.
func (c *catalog) campaignEntryLocked(id string) *campaignEntry {
	v := c.view.Load()
	if e := v.campaigns[id]; e != nil {
		return e
	}
	e := &campaignEntry{id: id}
	next := &catalogView{campaigns: make(map[string]*campaignEntry, len(v.campaigns)+1), items: v.items}
	for k, x := range v.campaigns {
		next.campaigns[k] = x
	}
	next.campaigns[id] = e
	c.view.Store(next)
	return e
}

// updateCampaign records a campaign from the watch stream.
func (c *catalog) updateCampaign(p *pb.Campaign) {
	info := &campaignInfo{
		kind: p.GetKind(), state: p.GetState(), start: tsNano(p.GetStart()), end: tsNano(p.GetEnd()),
		waveCount: p.GetWaveCount(), waveInterval: p.GetWaveInterval().AsDuration().Nanoseconds(),
		perUserLimit: p.GetPerUserLimit(),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.campaignEntryLocked(p.GetId()).info.Store(info)
}

// updateItem records an item's counters from the watch stream, as of the
// log index the stream was at.
func (c *catalog) updateItem(p *pb.Item, index uint64) {
	key := itemKey{p.GetCampaignId(), p.GetId()}
	c.mu.Lock()
	v := c.view.Load()
	e := v.items[key]
	if e == nil {
		e = &itemEntry{key: key, campaign: c.campaignEntryLocked(key.campaign)}
		v = c.view.Load() // campaignEntryLocked may have replaced it
		next := &catalogView{campaigns: v.campaigns, items: make(map[itemKey]*itemEntry, len(v.items)+1)}
		for k, x := range v.items {
			next.items[k] = x
		}
		next.items[key] = e
		c.view.Store(next)
	}
	c.mu.Unlock()

	e.total.Store(p.GetTotal())
	e.perUserLimit.Store(p.GetPerUserLimit())
	e.mu.Lock()
	defer e.mu.Unlock()
	if index >= e.index.Load() {
		e.index.Store(index)
		e.available.Store(p.GetAvailable())
		e.soldOut.Store(p.GetAvailable() == 0)
	}
}

// learnSoldOut records that the store refused a claim of one unit as sold
// out when it applied log entry index.
func (e *itemEntry) learnSoldOut(index uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if index >= e.index.Load() {
		e.index.Store(index)
		e.available.Store(0)
		e.soldOut.Store(true)
	}
}

// remainingPercent is the share of stock still available, rounded up to a
// multiple of 10.
func (e *itemEntry) remainingPercent() uint32 {
	total, avail := e.total.Load(), e.available.Load()
	if total == 0 || avail == 0 || e.soldOut.Load() {
		return 0
	}
	p := math.Ceil(float64(min(avail, total)) / float64(total) * 10)
	return uint32(p) * 10
}

// waveOpensAt is when entry wave w may claim: start + w x interval.
// It saturates instead of overflowing, as the store does.
func (ci *campaignInfo) waveOpensAt(w uint32) int64 {
	if ci.waveInterval <= 0 {
		return ci.start
	}
	if int64(w) > math.MaxInt64/ci.waveInterval {
		return math.MaxInt64
	}
	d := int64(w) * ci.waveInterval
	if ci.start > math.MaxInt64-d {
		return math.MaxInt64
	}
	return ci.start + d
}

// tsNano maps an unset timestamp to 0 ("none").
func tsNano(ts *timestamppb.Timestamp) int64 {
	if ts == nil {
		return 0
	}
	return ts.AsTime().UnixNano()
}
