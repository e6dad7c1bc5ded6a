package frontdoor

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Funnel stages, in the order a claim meets them, and what each may answer.
// flashd_frontdoor_requests_total{stage,outcome} counts every claim at
// every stage it reaches; outcome "ok" means it went on to the next stage.
var funnelOutcomes = []struct {
	stage    string
	outcomes []string
}{
	{"auth", []string{"ok", "missing", "expired", "invalid"}},
	{"frequency", []string{"ok", "ip_limited", "user_limited"}},
	{"global", []string{"ok", "limited"}},
	{"drop", []string{"ok", "dropped"}},
	{"validate", []string{"ok", "invalid_argument", "campaign_not_found", "item_not_found", "wrong_kind", "campaign_closed", "not_eligible"}},
	{"cache", []string{"ok", "sold_out", "limit_reached", "replayed", "bypassed"}},
	{"coalesce", []string{"ok", "shed", "queue_full", "store_unavailable", "sold_out", "abandoned"}},
	{"store", []string{"granted", "sold_out", "limit_reached", "refused", "error"}},
}

// counter is one stage's outcome counter, resolved once so that counting
// on the hot path is one atomic add.
type counter = prometheus.Counter

type metrics struct {
	authOK, authMissing, authExpired, authInvalid                   counter
	freqOK, freqIP, freqUser                                        counter
	globalOK, globalLimited                                         counter
	dropOK, dropDropped                                             counter
	validOK, validBad, validNoCampaign, validNoItem, validWrongKind counter
	validClosed, validNotEligible                                   counter
	cacheOK, cacheSoldOut, cacheLimit, cacheReplayed, cacheBypassed counter
	coalOK, coalShed, coalQueueFull, coalStoreDown, coalSoldOut     counter
	coalAbandoned                                                   counter
	storeGranted, storeSoldOut, storeLimit, storeRefused, storeErr  counter

	reads *prometheus.CounterVec // GetItem, ListMyClaims and the card calls, by outcome

	claimBatches batchMetrics
	drawBatches  batchMetrics // card draws, coalesced as claims are
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "flashd", Subsystem: "frontdoor", Name: "requests_total",
		Help: "Claims reaching each funnel stage, by stage and outcome (ok: passed on to the next stage).",
	}, []string{"stage", "outcome"})
	m := &metrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flashd", Subsystem: "frontdoor", Name: "reads_total",
			Help: "GetItem and ListMyClaims calls, by method and outcome.",
		}, []string{"method", "outcome"}),
		claimBatches: newBatchMetrics("", "Claim"),
		drawBatches:  newBatchMetrics("draw_", "Card draw"),
	}
	for _, s := range funnelOutcomes { // every series exists from the start, at 0
		for _, o := range s.outcomes {
			requests.WithLabelValues(s.stage, o)
		}
	}
	c := func(stage, outcome string) counter { return requests.WithLabelValues(stage, outcome) }
	m.authOK, m.authMissing, m.authExpired, m.authInvalid = c("auth", "ok"), c("auth", "missing"), c("auth", "expired"), c("auth", "invalid")
	m.freqOK, m.freqIP, m.freqUser = c("frequency", "ok"), c("frequency", "ip_limited"), c("frequency", "user_limited")
	m.globalOK, m.globalLimited = c("global", "ok"), c("global", "limited")
	m.dropOK, m.dropDropped = c("drop", "ok"), c("drop", "dropped")
	m.validOK, m.validBad, m.validNoCampaign = c("validate", "ok"), c("validate", "invalid_argument"), c("validate", "campaign_not_found")
	m.validNoItem, m.validWrongKind = c("validate", "item_not_found"), c("validate", "wrong_kind")
	m.validClosed, m.validNotEligible = c("validate", "campaign_closed"), c("validate", "not_eligible")
	m.cacheOK, m.cacheSoldOut, m.cacheLimit = c("cache", "ok"), c("cache", "sold_out"), c("cache", "limit_reached")
	m.cacheReplayed, m.cacheBypassed = c("cache", "replayed"), c("cache", "bypassed")
	m.coalOK, m.coalShed, m.coalQueueFull = c("coalesce", "ok"), c("coalesce", "shed"), c("coalesce", "queue_full")
	m.coalStoreDown, m.coalSoldOut, m.coalAbandoned = c("coalesce", "store_unavailable"), c("coalesce", "sold_out"), c("coalesce", "abandoned")
	m.storeGranted, m.storeSoldOut, m.storeLimit = c("store", "granted"), c("store", "sold_out"), c("store", "limit_reached")
	m.storeRefused, m.storeErr = c("store", "refused"), c("store", "error")

	for _, col := range []prometheus.Collector{
		requests, m.reads, m.claimBatches.batches, m.claimBatches.size, m.claimBatches.latency,
		m.drawBatches.batches, m.drawBatches.size, m.drawBatches.latency,
	} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// newBatchMetrics makes a coalescer's batch figures, named with prefix
// (flashd_frontdoor_<prefix>batches_total, ...).
func newBatchMetrics(prefix, what string) batchMetrics {
	return batchMetrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flashd", Subsystem: "frontdoor", Name: prefix + "batches_total",
			Help: what + " batches sent to the store.",
		}),
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flashd", Subsystem: "frontdoor", Name: prefix + "batch_size",
			Help: what + "s per batch sent to the store.", Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flashd", Subsystem: "frontdoor", Name: prefix + "batch_seconds",
			Help:    "Time from sending a " + strings.ToLower(what) + " batch to the store to its answer, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}),
	}
}

// gauge registers a gauge read from f at scrape time.
func gauge(reg prometheus.Registerer, name, help string, f func() float64) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "flashd", Subsystem: "frontdoor", Name: name, Help: help,
	}, f))
}
