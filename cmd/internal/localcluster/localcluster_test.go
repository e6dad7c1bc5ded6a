package localcluster

import (
	"os"
	"strings"
	"syscall"
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

// TestProcCPUSecondsCountsWork: ProcCPUSeconds counts the CPU a process
// used, as getrusage does. The work is measured in CPU time, not wall time
// (on a loaded machine 200 ms of spinning may get a few ms of CPU): spin
// until getrusage says a fifth of a second was used, then /proc must say
// about as much (both count in the kernel; /proc in clock ticks).
func TestProcCPUSecondsCountsWork(t *testing.T) {
	const work = 0.2 // CPU seconds
	used := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	before, start := ProcCPUSeconds(os.Getpid()), used()
	deadline := time.Now().Add(2 * time.Minute) // only against a counter that never moves
	for used()-start < work {
		if time.Now().After(deadline) {
			t.Fatalf("getrusage counted %.3fs of CPU in two minutes of spinning", used()-start)
		}
	}
	if after := ProcCPUSeconds(os.Getpid()); after-before < work-3.0/clockTicksPerSecond {
		t.Errorf("CPU %v then %v after %.1fs of CPU by getrusage", before, after, work)
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
