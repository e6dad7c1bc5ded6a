package runner

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Fault kinds, as --faults names them.
const (
	FaultPartition      = "partition"
	FaultKill           = "kill"
	FaultPause          = "pause"
	FaultRestart        = "restart"
	FaultLeaderTransfer = "leader-transfer"
)

// AllFaults is every kind, in the order --faults lists them.
var AllFaults = []string{FaultPartition, FaultKill, FaultPause, FaultRestart, FaultLeaderTransfer}

// Partition modes.
const (
	PartitionIsolate = "isolate" // Groups[0] = one region, cut from all others
	PartitionSplit   = "split"   // Groups = two sets of regions, cut from each other
	PartitionOneway  = "oneway"  // Groups[0] = FROM, Groups[1] = TO: FROM can no longer reach TO
)

// Leader names the store leader in a fault's target, resolved when the
// fault is injected.
const Leader = "leader"

// Region is a region and its store nodes.
type Region struct {
	Name  string
	Nodes []string
}

// Topology is the cluster a schedule is made for.
type Topology struct {
	Regions []Region
}

func (t Topology) nodes() []string {
	var out []string
	for _, r := range t.Regions {
		out = append(out, r.Nodes...)
	}
	return out
}

func (t Topology) regionNames() []string {
	var out []string
	for _, r := range t.Regions {
		out = append(out, r.Name)
	}
	return out
}

// Fault is one fault of a schedule. A fault with a Duration is healed at
// At+Duration; restart and leader-transfer are instantaneous.
type Fault struct {
	Kind      string        `json:"kind"`
	Partition string        `json:"partition,omitempty"`
	Groups    [][]string    `json:"groups,omitempty"` // regions, for partitions
	Node      string        `json:"node,omitempty"`   // a node ID or "leader"
	At        time.Duration `json:"at"`
	Duration  time.Duration `json:"duration"`
}

// String is the fault as the chaos scripts spell it.
func (f Fault) String() string {
	switch f.Kind {
	case FaultPartition:
		switch f.Partition {
		case PartitionSplit:
			return fmt.Sprintf("partition split %s/%s", strings.Join(f.Groups[0], ","), strings.Join(f.Groups[1], ","))
		case PartitionOneway:
			return fmt.Sprintf("partition oneway %s %s", f.Groups[0][0], f.Groups[1][0])
		default:
			return fmt.Sprintf("partition isolate %s", f.Groups[0][0])
		}
	case FaultLeaderTransfer:
		return "leader-transfer"
	default:
		return f.Kind + " " + f.Node
	}
}

// Timing shapes a schedule: how long faults last and how long the cluster
// is left alone between them.
type Timing struct {
	Warmup   time.Duration // no fault before this
	Cooldown time.Duration // no fault in the last stretch of the run
	FaultMin time.Duration
	FaultMax time.Duration
	GapMin   time.Duration
	GapMax   time.Duration
}

// ParseFaults parses a --faults list.
func ParseFaults(list string) ([]string, error) {
	var out []string
	for _, k := range strings.Split(list, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !slices.Contains(AllFaults, k) {
			return nil, fmt.Errorf("unknown fault %q: want some of %s", k, strings.Join(AllFaults, ","))
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Schedule draws the faults of a run from its seed: the same seed, kinds,
// topology, duration and timing give the same schedule. Faults do not
// overlap, and each leaves a quorum of voters in some majority side when
// voters are laid out so that losing one region keeps a quorum.
func Schedule(seed uint64, duration time.Duration, kinds []string, topo Topology, tm Timing) []Fault {
	if len(kinds) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	node := func() string {
		if rng.IntN(2) == 0 {
			return Leader
		}
		nodes := topo.nodes()
		return nodes[rng.IntN(len(nodes))]
	}
	var out []Fault
	at := tm.Warmup
	for {
		f := Fault{Kind: kinds[rng.IntN(len(kinds))], At: at}
		switch f.Kind {
		case FaultPartition:
			f.Duration = between(tm.FaultMin, tm.FaultMax)
			f.Partition, f.Groups = partition(rng, topo.regionNames())
		case FaultKill, FaultPause:
			f.Duration = between(tm.FaultMin, tm.FaultMax)
			f.Node = node()
		case FaultRestart:
			f.Node = node()
		}
		if f.At+f.Duration > duration-tm.Cooldown {
			return out
		}
		out = append(out, f)
		at = f.At + f.Duration + between(tm.GapMin, tm.GapMax)
	}
}

// partition draws a cut between regions. "leader" as an isolated region
// means the leader's region, resolved at injection.
func partition(rng *rand.Rand, regions []string) (string, [][]string) {
	shuffled := slices.Clone(regions)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	switch rng.IntN(4) {
	case 0:
		return PartitionIsolate, [][]string{{Leader}}
	case 1:
		return PartitionIsolate, [][]string{{shuffled[0]}}
	case 2:
		cut := 1 + rng.IntN(len(shuffled)-1)
		a, b := slices.Clone(shuffled[:cut]), slices.Clone(shuffled[cut:])
		slices.Sort(a)
		slices.Sort(b)
		return PartitionSplit, [][]string{a, b}
	default:
		return PartitionOneway, [][]string{{shuffled[0]}, {shuffled[1]}}
	}
}
