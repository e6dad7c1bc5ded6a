package localcluster

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestFunnelMinus(t *testing.T) {
	samples, err := ParseMetrics(strings.NewReader(`# TYPE flashd_frontdoor_requests_total counter
flashd_frontdoor_requests_total{outcome="ok",stage="cache"} 10
flashd_frontdoor_requests_total{outcome="sold_out",stage="cache"} 90
flashd_store_claim_batches_total{node="n1"} 7
process_cpu_seconds_total 1.5
`))
	if err != nil {
		t.Fatal(err)
	}
	before := Funnel{}
	before.Add("cache", "ok", 4)
	after := Funnel{}
	after.AddSamples(samples)
	d := after.Minus(before)
	if d.Reached("cache") != 96 || d.Stopped("cache") != 90 {
		t.Errorf("cache reached %v stopped %v, want 96 and 90", d.Reached("cache"), d.Stopped("cache"))
	}
	if Sum(samples, StoreBatchesMetric) != 7 || Sum(samples, CPUMetric) != 1.5 {
		t.Errorf("sums %v %v, want 7 and 1.5", Sum(samples, StoreBatchesMetric), Sum(samples, CPUMetric))
	}
}

func TestProcCPUSecondsCountsWork(t *testing.T) {
	before := ProcCPUSeconds(os.Getpid())
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
	}
	if after := ProcCPUSeconds(os.Getpid()); after-before < 0.05 {
		t.Errorf("CPU %v then %v after 200ms of spinning", before, after)
	}
	if ProcCPUSeconds(-1) != 0 {
		t.Error("a process that does not exist used CPU")
	}
}

func TestFreeAddrsAreDistinct(t *testing.T) {
	addrs, err := FreeAddrs(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] || !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("address %s repeated or not loopback", a)
		}
		seen[a] = true
	}
}
