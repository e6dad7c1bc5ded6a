package frontdoor

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Watch stream reconnection.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 2 * time.Second
	// watchSettle: the stream first sends the whole current state, back to
	// back; once it has been quiet this long, the catalog is complete.
	watchSettle = 100 * time.Millisecond
)

// watchLoop keeps the catalog and the funnel configuration in step with
// the store's Watch stream, reconnecting with backoff when it breaks.
func (d *Door) watchLoop() {
	defer d.wg.Done()
	backoff := watchRetryMin
	for {
		gotEvents, err := d.watchOnce()
		d.catalog.synced.Store(false)
		if gotEvents {
			backoff = watchRetryMin
		}
		select {
		case <-d.stop:
			return
		case <-time.After(backoff/2 + rand.N(backoff/2)):
		}
		if !gotEvents {
			backoff = min(2*backoff, watchRetryMax)
		}
		d.log.Debug("watch stream broke, reconnecting", "err", err)
	}
}

func (d *Door) watchOnce() (gotEvents bool, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	stream, err := d.store.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		return false, err
	}
	gen := d.watchGen.Add(1)
	settle := time.AfterFunc(time.Hour, func() {
		if d.watchGen.Load() == gen && ctx.Err() == nil {
			d.catalog.synced.Store(true)
			d.maybeReady()
		}
	})
	defer settle.Stop()
	for {
		ev, err := stream.Recv()
		if err != nil {
			d.watchGen.Add(1)
			return gotEvents, err
		}
		gotEvents = true
		if c := ev.GetFrontDoorConfig(); c != nil {
			d.applyConfig(funnelConfigFromPB(c))
		}
		if c := ev.GetCampaign(); c != nil {
			d.catalog.updateCampaign(c)
		}
		if it := ev.GetItem(); it != nil {
			d.catalog.updateItem(it, ev.GetIndex())
		}
		if !d.catalog.synced.Load() {
			settle.Reset(watchSettle)
		}
	}
}

// announceLoop sends a heartbeat to the store leader every announce
// interval and takes back the live front doors and the configuration.
func (d *Door) announceLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.AnnounceInterval)
	defer t.Stop()
	last := d.cfg.Now()
	for {
		now := d.cfg.Now()
		d.announce(now, now.Sub(last))
		last = now
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
	}
}

func (d *Door) announce(now time.Time, since time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.AnnounceInterval)
	defer cancel()
	perSecond := 0.0
	if admitted := d.admitted.Swap(0); since > 0 {
		perSecond = float64(admitted) / since.Seconds()
	}
	resp, err := d.store.AnnounceFrontDoor(ctx, &pb.AnnounceFrontDoorRequest{FrontDoor: &pb.FrontDoorPresence{
		Id: d.cfg.ID, Region: d.cfg.Region, GrpcAddr: d.cfg.AdvertiseAddr, Weight: d.cfg.Weight,
		DegradeLevel: d.funnel.Load().deg.level, AdmittedPerSecond: perSecond,
	}})
	if err != nil {
		// The last share stays: without the leader no door can learn of
		// joins or deaths, and the others keep theirs too.
		d.log.Debug("heartbeat to the store failed", "err", err)
		return
	}
	if c := resp.GetConfig(); c != nil {
		d.applyConfig(funnelConfigFromPB(c))
	}
	share, n := computeShare(d.cfg.ID, d.cfg.Weight, resp.GetLive())
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.announced && d.cfg.StrictGlobal {
		// The others count this door from their next heartbeat on, at most
		// one interval from now: until then its budget would be extra.
		d.global.holdUntil(now.Add(d.cfg.AnnounceInterval * 3 / 2))
	}
	d.announced = true
	if share != d.share || n != d.liveDoors {
		d.log.Info("global share changed", "share", share, "live_front_doors", n)
	}
	d.share, d.liveDoors = share, n
	d.refreshLocked(now)
}

// applyConfig takes a replicated configuration from the watch stream or a
// heartbeat answer, if newer than the one in force.
func (d *Door) applyConfig(cfg FunnelConfig) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.haveConfig && cfg.Version <= d.funnelCfg.Version {
		return
	}
	d.funnelCfg, d.haveConfig = cfg, true
	d.log.Info("funnel config", "version", cfg.Version, "global_rate", cfg.GlobalRate,
		"per_user_rate", cfg.PerUserRate, "per_ip_rate", cfg.PerIPRate, "degrade_level", cfg.DegradeLevel,
		"drop_fraction", cfg.DropFraction, "degrade_auto", cfg.DegradeAuto)
	d.refreshLocked(d.cfg.Now())
	d.readyLocked()
}

// refreshLocked recomputes what the hot path reads from the configuration,
// the share and the automatic level. d.mu held.
func (d *Door) refreshLocked(now time.Time) {
	deg := effectiveDegradation(d.funnelCfg, d.auto)
	if cur := d.funnel.Load(); cur.cfg != d.funnelCfg || cur.deg != deg {
		if cur.deg.level != deg.level {
			d.log.Info("degradation level", "level", deg.level, "drop_fraction", deg.drop, "auto", d.funnelCfg.DegradeAuto)
		}
		d.funnel.Store(newFunnelState(d.funnelCfg, deg))
	}
	d.global.set(d.funnelCfg.GlobalRate*d.share, now)
	d.coalescer.enforce.Store(deg.level >= 1)
	if d.draws != nil {
		d.draws.enforce.Store(deg.level >= 1)
	}
}

func (d *Door) maybeReady() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.readyLocked()
}

func (d *Door) readyLocked() {
	if d.haveConfig && d.catalog.synced.Load() {
		d.readyOnce.Do(func() { close(d.ready) })
	}
}

// controlLoop drives automatic degradation every autoTick.
func (d *Door) controlLoop() {
	defer d.wg.Done()
	t := time.NewTicker(autoTick)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		d.controlTick()
	}
}

func (d *Door) controlTick() {
	c := d.coalescer
	shed, arrived := c.shed.Load(), c.arrived.Load()
	now := d.cfg.Now()
	pressure := c.limit.pressedSince(now.Add(-autoTick)) || c.queued() > c.limit.highWater
	d.mu.Lock()
	defer d.mu.Unlock()
	ratio := 0.0
	if n := arrived - d.lastIn; n > 0 {
		ratio = float64(shed-d.lastShed) / float64(n)
	}
	d.lastShed, d.lastIn = shed, arrived
	if d.funnelCfg.DegradeAuto {
		d.auto.tick(pressure, ratio)
	} else {
		d.auto = autoLevel{}
	}
	d.refreshLocked(now)
}

// registerGauges exposes the door's state at scrape time.
func (d *Door) registerGauges(reg prometheus.Registerer) error {
	c := d.coalescer
	locked := func(f func() float64) func() float64 {
		return func() float64 {
			d.mu.Lock()
			defer d.mu.Unlock()
			return f()
		}
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, g := range []struct {
		name, help string
		f          func() float64
	}{
		{"degrade_level", "Degradation level applied now (the admin's, or higher when automatic).", func() float64 { return float64(d.funnel.Load().deg.level) }},
		{"drop_fraction", "Fraction of claims dropped at random (L2) or told to clients (L3).", func() float64 { return d.funnel.Load().deg.drop }},
		{"config_version", "Version of the replicated funnel configuration in force.", func() float64 { return float64(d.funnel.Load().cfg.Version) }},
		{"global_share", "This door's fraction of the global rate limit.", locked(func() float64 { return d.share })},
		{"global_rate_limit", "Claims per second this door admits under the global limit (0: none).", d.global.currentRate},
		{"live_front_doors", "Live front doors, as the store leader last said.", locked(func() float64 { return float64(d.liveDoors) })},
		{"adaptive_limit", "Claims the adaptive limit lets into the coalescer at once.", func() float64 { return float64(c.limit.limit.Load()) }},
		{"adaptive_limit_enforced", "1 when the adaptive limit refuses claims (level 1 or more).", func() float64 { return b(c.enforce.Load()) }},
		{"batch_baseline_seconds", "Least recent batch latency, the adaptive limit's baseline.", func() float64 { _, base := c.limit.state(); return base.Seconds() }},
		{"queue_depth", "Claims waiting for a batch.", func() float64 { return float64(c.queued()) }},
		{"batches_in_flight", "Batches sent to the store and not yet answered.", func() float64 { return float64(c.inFlight.Load()) }},
		{"claims_in_flight", "Claims in the coalescer (queued or in a batch).", func() float64 { return float64(c.claimsIn.Load()) }},
		{"catalog_synced", "1 when the catalog is in step with the store's watch stream.", func() float64 { return b(d.catalog.synced.Load()) }},
		{"tracked_ips", "Client IPs with a token bucket.", func() float64 { return float64(d.ips.keys.len()) }},
		{"tracked_users", "Users with a token bucket.", func() float64 { return float64(d.users.keys.len()) }},
		{"tracked_limit_hints", "Users remembered as at their limit on an item.", func() float64 { return float64(d.hints.users.len()) }},
	} {
		if err := gauge(reg, g.name, g.help, g.f); err != nil {
			return err
		}
	}
	return nil
}
