package bench

import "fmt"

// The targets (reported, never asserted).
const (
	targetOverRedis        = 2      // flashd's grants per second over Redis-Lua's with appendfsync always
	targetOverEcho         = 0.5    // the full stack over one gRPC hop
	targetCoalescing       = 20     // coalescing on over off
	targetHalfRateP99Ms    = 10     // p99 at half the maximum sustained rate
	targetRejectionsPerCPU = 100000 // rejections per second per front-door core after sell-out
)

// headline is the figure runs of a workload are compared by: granted
// claims per second, or, when every run sells the same stock out, the
// refusals per second after the sell-out.
func headline(workload string) (what string, figure func(*RunReport) float64) {
	if workload == WorkloadSellout {
		return "SOLD_OUT answers per second after the sell-out", func(r *RunReport) float64 {
			if r.Sellout == nil || r.Sellout.After == nil {
				return 0
			}
			return r.Sellout.After.PerSecond
		}
	}
	return "granted claims per second", func(r *RunReport) float64 { return r.GrantedPerSecond }
}

// checks compares the runs of rep: ratios between flashd and the
// baselines, measured in the same bench on the same machine, and the
// issue's targets.
func checks(rep *Report, cfg Config) []Check {
	main := rep.run(runFlashd)
	if main == nil {
		return nil
	}
	var out []Check
	ratio := func(name string, num, den float64, target float64, detail string) {
		if den <= 0 {
			return
		}
		c := Check{Name: name, Value: round3(num / den), Unit: "x", Detail: detail}
		if target > 0 {
			met := c.Value >= target
			c.Target, c.Met = fmt.Sprintf(">= %gx", target), &met
		}
		out = append(out, c)
	}
	what, rate := headline(cfg.Workload)
	describe := func(a, b *RunReport) string {
		return fmt.Sprintf("%s: %s %s, %s %s", what, a.Name, count(int64(rate(a))), b.Name, count(int64(rate(b))))
	}
	// byCPU is the same comparison by the CPU each answer cost, every
	// process of the run counted (the load generator too): on a machine
	// shared with other work, the figure its load disturbs least.
	byCPU := func(name string, fast, slow *RunReport, target float64) {
		if cfg.sellout() || fast.CPUTotal <= 0 {
			return
		}
		ratio(name+", by CPU per answer", slow.CPUTotal, fast.CPUTotal, target,
			fmt.Sprintf("CPU microseconds per answer, all processes: %s %.0f, %s %.0f", fast.Name, fast.CPUTotal, slow.Name, slow.CPUTotal))
	}
	if r := rep.run(runRedisAlways); r != nil {
		target := 0.0
		if !cfg.sellout() {
			target = targetOverRedis
		}
		ratio("flashd / Redis-Lua (appendfsync always)", rate(main), rate(r), target, describe(main, r))
		byCPU("flashd / Redis-Lua (appendfsync always)", main, r, target)
	}
	if r := rep.run(runRedisEverySec); r != nil {
		ratio("flashd / Redis-Lua (appendfsync everysec)", rate(main), rate(r), 0, describe(main, r))
	}
	if r := rep.run(runEcho); r != nil {
		// The echo grants every claim: compare answers per second, which
		// for flashd's sustained runs are its grants.
		ratio("flashd / echo (one gRPC hop)", main.AnswersPerSecond, r.AnswersPerSecond, targetOverEcho,
			fmt.Sprintf("answers per second: %s %s, %s %s", main.Name, count(int64(main.AnswersPerSecond)), r.Name, count(int64(r.AnswersPerSecond))))
		byCPU("flashd / echo (one gRPC hop)", main, r, targetOverEcho)
	}
	if r := rep.run(runCoalesceOff); r != nil {
		target := 0.0
		if !cfg.sellout() {
			target = targetCoalescing
		}
		ratio("coalescing on / off", rate(main), rate(r), target, describe(main, r))
		byCPU("coalescing on / off", main, r, target)
	}
	if r := rep.run(runHalfRate); r != nil && r.Latency.Count > 0 {
		met := r.Latency.P99 <= targetHalfRateP99Ms
		out = append(out, Check{Name: "p99 latency at half the maximum sustained rate", Value: r.Latency.P99, Unit: "ms",
			Target: fmt.Sprintf("<= %d ms", targetHalfRateP99Ms), Met: &met,
			Detail: fmt.Sprintf("open loop at %s claims/s (half of %s), measured from the intended send time; p50 %s, p99.9 %s",
				count(int64(r.Rate)), count(int64(main.GrantedPerSecond)), ms(r.Latency.P50), ms(r.Latency.P999))})
	}
	if main.Sellout != nil && main.Sellout.After != nil {
		a := main.Sellout.After
		if a.PerServerCore > 0 {
			met := a.PerServerCore >= targetRejectionsPerCPU
			out = append(out, Check{Name: "rejections per second per front-door core after sell-out", Value: a.PerServerCore, Unit: "/core-s",
				Target: fmt.Sprintf(">= %s", count(targetRejectionsPerCPU)), Met: &met,
				Detail: fmt.Sprintf("%s SOLD_OUT answers in %.1fs for %.2f CPU-seconds of the front doors (%s/s wall clock, the load generator sharing the machine)",
					count(a.Rejections), a.Seconds, a.ServerCPUSeconds, count(int64(a.PerSecond)))})
		}
		if a.StoreBatches >= 0 {
			met := a.StoreBatches == 0
			out = append(out, Check{Name: "store traffic after sell-out", Value: a.StoreBatches, Unit: "batches", Target: "0", Met: &met,
				Detail: "claim batches the store nodes received from the moment the sell-out settled to the end"})
		}
	}
	return out
}
