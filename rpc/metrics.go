package rpc

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// storeMetrics are the store node's data-path figures.
type storeMetrics struct {
	claims       *prometheus.CounterVec
	batches      prometheus.Counter
	batchSize    prometheus.Histogram
	applyLatency prometheus.Histogram

	drawBatches   prometheus.Counter
	drawBatchSize prometheus.Histogram
}

func newStoreMetrics(reg prometheus.Registerer, nodeID string) (*storeMetrics, error) {
	labels := prometheus.Labels{"node": nodeID}
	m := &storeMetrics{
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flashd", Subsystem: "store", Name: "claims_total", ConstLabels: labels,
			Help: "Claims answered by this node, by outcome (OK or the refusal reason).",
		}, []string{"outcome"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flashd", Subsystem: "store", Name: "claim_batches_total", ConstLabels: labels,
			Help: "Claim batches proposed by this node as leader.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flashd", Subsystem: "store", Name: "claim_batch_size", ConstLabels: labels,
			Help: "Claims per proposed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flashd", Subsystem: "store", Name: "apply_seconds", ConstLabels: labels,
			Help:    "Time from proposing a claim batch to its result (commit + apply).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		drawBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flashd", Subsystem: "store", Name: "draw_batches_total", ConstLabels: labels,
			Help: "Draw batches (card-collect) proposed by this node as leader.",
		}),
		drawBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flashd", Subsystem: "store", Name: "draw_batch_size", ConstLabels: labels,
			Help: "Draws per proposed draw batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
	}
	for _, c := range []prometheus.Collector{m.claims, m.batches, m.batchSize, m.applyLatency, m.drawBatches, m.drawBatchSize} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *storeMetrics) observeBatch(size int, took time.Duration) {
	m.batches.Inc()
	m.batchSize.Observe(float64(size))
	m.applyLatency.Observe(took.Seconds())
}

// observeDrawBatch counts a draw batch; its latency joins the claim
// batches' (both are one log entry's commit and apply).
func (m *storeMetrics) observeDrawBatch(size int, took time.Duration) {
	m.drawBatches.Inc()
	m.drawBatchSize.Observe(float64(size))
	m.applyLatency.Observe(took.Seconds())
}

func (m *storeMetrics) countOutcomes(outcomes []*pb.ClaimOutcome) {
	var byReason [pb.Reason_REASON_WRONG_CAMPAIGN_KIND + 1]int
	for _, o := range outcomes {
		if int(o.Reason) < len(byReason) {
			byReason[o.Reason]++
		}
	}
	for r, n := range byReason {
		if n > 0 {
			m.claims.WithLabelValues(outcomeLabel(pb.Reason(r))).Add(float64(n))
		}
	}
}

func outcomeLabel(r pb.Reason) string {
	if r == pb.Reason_REASON_UNSPECIFIED {
		return "OK"
	}
	return r.String()[len("REASON_"):]
}
