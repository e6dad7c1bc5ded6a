package check

import (
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Names of the checks, as violations report them.
const (
	CheckOversell     = "no-oversell"
	CheckCounters     = "counters-agree"
	CheckLostAck      = "no-lost-ack"
	CheckUserLimit    = "user-limit"
	CheckUniqueIDs    = "unique-claim-ids"
	CheckPhantom      = "no-phantom-claim"
	CheckAnswers      = "one-answer-per-request"
	CheckReplicas     = "identical-replicas"
	CheckLinearizable = "linearizable"
	CheckFinalState   = "final-state-read"
)

// Verdicts of the linearizability check of one item.
const (
	VerdictOK      = "ok"
	VerdictIllegal = "illegal"
	VerdictUnknown = "unknown" // the checker timed out: neither proven nor refuted
)

// Options bound the checker.
type Options struct {
	// LinearizabilityTimeout bounds porcupine's search per item; an item
	// that is not decided in time is reported VerdictUnknown. 0: 60s.
	LinearizabilityTimeout time.Duration
	// Parallelism is how many items are checked at once. 0: GOMAXPROCS.
	Parallelism int
}

// Violation is one broken promise.
type Violation struct {
	Check  string `json:"check"`
	Item   string `json:"item,omitempty"`
	Detail string `json:"detail"`
}

func (v Violation) String() string {
	if v.Item == "" {
		return v.Check + ": " + v.Detail
	}
	return fmt.Sprintf("%s [%s]: %s", v.Check, v.Item, v.Detail)
}

// ItemResult is the linearizability verdict of one item's history.
type ItemResult struct {
	Item       string        `json:"item"`
	Operations int           `json:"operations"`
	Pending    int           `json:"pending"` // operations with an unlearned outcome that took effect
	Verdict    string        `json:"verdict"`
	Elapsed    time.Duration `json:"elapsed"`

	ops   []porcupine.Operation
	model porcupine.Model
}

// Report is the checker's answer.
type Report struct {
	Calls      int `json:"calls"`      // claim calls made
	Operations int `json:"operations"` // logical claims (distinct request IDs)
	// What the workload learnt, per logical claim.
	Granted      int `json:"granted"`
	SoldOut      int `json:"sold_out"`
	LimitReached int `json:"limit_reached"`
	Refused      int `json:"refused"`
	Unknown      int `json:"unknown"`
	// Of the unknown ones, what the final state says.
	UnknownApplied int `json:"unknown_applied"`
	UnknownAbsent  int `json:"unknown_absent"`
	// Refusals other than sold out and limit reached, by reason.
	RefusedReasons map[string]int `json:"refused_reasons,omitempty"`

	FinalClaims int           `json:"final_claims"`
	Replicas    int           `json:"replicas"`
	Items       []ItemResult  `json:"items"`
	Violations  []Violation   `json:"violations"`
	CheckTime   time.Duration `json:"check_time"`
}

// OK reports whether no violation was found. Items whose linearizability
// is unknown do not make a report fail; Undecided counts them.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

// Undecided is how many items the linearizability checker timed out on.
func (r *Report) Undecided() int {
	n := 0
	for _, it := range r.Items {
		if it.Verdict == VerdictUnknown {
			n++
		}
	}
	return n
}

// LinearizableOps is how many operations the linearizability check covered
// (final reads included) on items it decided.
func (r *Report) LinearizableOps() int {
	n := 0
	for _, it := range r.Items {
		if it.Verdict != VerdictUnknown {
			n += it.Operations
		}
	}
	return n
}

func (r *Report) violate(check, item, format string, args ...any) {
	r.Violations = append(r.Violations, Violation{Check: check, Item: item, Detail: fmt.Sprintf(format, args...)})
}

// operation is one logical claim: every call with one request ID.
type operation struct {
	first    Call // the first call: who, what, when
	end      int64
	outcome  Outcome
	claimID  uint64
	reason   string
	definite bool
}

// Check runs every check on a history and the final state.
func Check(h History, f Final, opts Options) *Report {
	started := time.Now()
	if opts.LinearizabilityTimeout <= 0 {
		opts.LinearizabilityTimeout = 60 * time.Second
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = runtime.GOMAXPROCS(0)
	}
	r := &Report{Calls: len(h.Calls), RefusedReasons: map[string]int{}, Violations: []Violation{}}
	ops, order := r.operations(h.Calls)
	specs := map[string]ItemSpec{}
	for _, s := range h.Items {
		specs[s.Key()] = s
	}
	haveFinal := f.Err == ""
	if !haveFinal {
		r.violate(CheckFinalState, "", "%s", f.Err)
	}
	claimsByRequest := map[string]FinalClaim{}
	if haveFinal {
		claimsByRequest = r.checkFinal(specs, ops, f)
		r.checkAcks(ops, order, claimsByRequest)
		r.checkReplicas(f.Nodes)
	}
	r.checkLinearizable(specs, ops, order, claimsByRequest, f, haveFinal, opts)
	r.CheckTime = time.Since(started)
	return r
}

// operations groups calls by request ID and checks that one request never
// got two different definite answers.
func (r *Report) operations(calls []Call) (map[string]*operation, []string) {
	ops := map[string]*operation{}
	var order []string
	for _, c := range calls {
		op, ok := ops[c.RequestID]
		if !ok {
			op = &operation{first: c, end: c.End, outcome: Unknown}
			ops[c.RequestID] = op
			order = append(order, c.RequestID)
		}
		if c.Start < op.first.Start {
			op.first.Start = c.Start
		}
		if !c.Outcome.definite() {
			continue
		}
		if op.definite {
			if op.outcome != c.Outcome || op.claimID != c.ClaimID {
				r.violate(CheckAnswers, itemKey(c.Campaign, c.Item), "request %s answered %s #%d, later %s #%d",
					c.RequestID, op.outcome, op.claimID, c.Outcome, c.ClaimID)
			}
			continue
		}
		op.definite, op.outcome, op.claimID, op.reason, op.end = true, c.Outcome, c.ClaimID, c.Reason, c.End
	}
	r.Operations = len(order)
	for _, id := range order {
		switch op := ops[id]; op.outcome {
		case Granted:
			r.Granted++
		case SoldOut:
			r.SoldOut++
		case LimitReached:
			r.LimitReached++
		case Refused:
			r.Refused++
			r.RefusedReasons[op.reason]++
			if op.reason == "REQUEST_ID_REUSED" {
				r.violate(CheckAnswers, itemKey(op.first.Campaign, op.first.Item),
					"request %s refused as reused, but the workload never reuses an ID with another payload", id)
			}
		default:
			r.Unknown++
		}
	}
	return ops, order
}

// checkFinal checks the final state on its own and against the requests
// made, and returns the claims by request ID.
func (r *Report) checkFinal(specs map[string]ItemSpec, ops map[string]*operation, f Final) map[string]FinalClaim {
	r.FinalClaims = len(f.Claims)
	byRequest := map[string]FinalClaim{}
	ids := map[uint64]bool{}
	type userItem struct{ user, item string }
	held := map[userItem]uint64{}
	liveByItem := map[string]uint64{}
	for _, c := range f.Claims {
		key := itemKey(c.Campaign, c.Item)
		if ids[c.ID] {
			r.violate(CheckUniqueIDs, key, "claim ID %d appears twice", c.ID)
		}
		ids[c.ID] = true
		if prev, dup := byRequest[c.RequestID]; dup {
			r.violate(CheckUniqueIDs, key, "request %s made two claims, #%d and #%d", c.RequestID, prev.ID, c.ID)
		}
		byRequest[c.RequestID] = c
		if !c.live() {
			continue
		}
		held[userItem{c.User, key}] += uint64(c.Quantity)
		liveByItem[key] += uint64(c.Quantity)
		op, sent := ops[c.RequestID]
		switch {
		case !sent:
			r.violate(CheckPhantom, key, "claim #%d has request ID %s, which the workload never sent", c.ID, c.RequestID)
		case op.first.User != c.User || op.first.Campaign != c.Campaign || op.first.Item != c.Item || op.first.Quantity != c.Quantity:
			r.violate(CheckPhantom, key, "claim #%d (request %s) is for %s ×%d, the request was %s on %s ×%d",
				c.ID, c.RequestID, c.User, c.Quantity, op.first.User, itemKey(op.first.Campaign, op.first.Item), op.first.Quantity)
		case op.definite && op.outcome != Granted:
			r.violate(CheckPhantom, key, "claim #%d (request %s) exists, but the request was answered %s", c.ID, c.RequestID, op.outcome)
		}
	}
	for ui, q := range held {
		spec, ok := specs[ui.item]
		if ok && q > uint64(spec.PerUserLimit) {
			r.violate(CheckUserLimit, ui.item, "user %s holds %d, limit %d", ui.user, q, spec.PerUserLimit)
		}
	}
	finalItems := map[string]FinalItem{}
	for _, it := range f.Items {
		finalItems[itemKey(it.Campaign, it.Item)] = it
	}
	for key, spec := range specs {
		it, ok := finalItems[key]
		if !ok {
			r.violate(CheckFinalState, key, "item missing from the final state")
			continue
		}
		live := liveByItem[key]
		if live > spec.Stock || it.Reserved+it.Sold > spec.Stock {
			r.violate(CheckOversell, key, "stock %d, %d units held by claims, counters reserved %d sold %d",
				spec.Stock, live, it.Reserved, it.Sold)
		}
		if it.Total != spec.Stock || it.Available+it.Reserved+it.Sold != it.Total || it.Reserved+it.Sold != live {
			r.violate(CheckCounters, key, "total %d (stock %d), available %d + reserved %d + sold %d, claims hold %d",
				it.Total, spec.Stock, it.Available, it.Reserved, it.Sold, live)
		}
	}
	return byRequest
}

// checkAcks checks every acknowledged claim is in the final state as it was
// acknowledged, and counts what became of the unknown ones.
func (r *Report) checkAcks(ops map[string]*operation, order []string, claims map[string]FinalClaim) {
	for _, id := range order {
		op := ops[id]
		c, found := claims[id]
		key := itemKey(op.first.Campaign, op.first.Item)
		switch {
		case op.outcome == Granted && !found:
			r.violate(CheckLostAck, key, "claim #%d (request %s, user %s) was acknowledged and is not in the final state", op.claimID, id, op.first.User)
		case op.outcome == Granted && (c.ID != op.claimID || !c.live()):
			r.violate(CheckLostAck, key, "claim #%d (request %s) was acknowledged; the final state has #%d %s", op.claimID, id, c.ID, c.State)
		case !op.definite && found:
			r.UnknownApplied++
		case !op.definite:
			r.UnknownAbsent++
		}
	}
}

func (r *Report) checkReplicas(nodes []NodeState) {
	r.Replicas = len(nodes)
	if len(nodes) == 0 {
		r.violate(CheckReplicas, "", "no replica state was read")
		return
	}
	for _, n := range nodes {
		if n.Err != "" {
			r.violate(CheckReplicas, "", "replica %s: %s", n.ID, n.Err)
			continue
		}
		if n.Digest != nodes[0].Digest || n.AppliedIndex != nodes[0].AppliedIndex {
			r.violate(CheckReplicas, "", "replica %s has digest %s at %d, replica %s %s at %d",
				n.ID, short(n.Digest), n.AppliedIndex, nodes[0].ID, short(nodes[0].Digest), nodes[0].AppliedIndex)
		}
	}
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

// checkLinearizable builds each item's porcupine history and checks it.
// With a final state, an operation whose outcome the client never learned
// is known to have been granted (its request ID is in the final state) or
// to have had no effect (dropped: a no-op); the granted ones stay pending
// in time. The final read is the last operation of every item.
func (r *Report) checkLinearizable(specs map[string]ItemSpec, ops map[string]*operation, order []string,
	claims map[string]FinalClaim, f Final, haveFinal bool, opts Options) {
	byItem := map[string][]*operation{}
	for _, id := range order {
		op := ops[id]
		key := itemKey(op.first.Campaign, op.first.Item)
		if _, ok := specs[key]; !ok {
			r.violate(CheckLinearizable, key, "request %s names an item the workload did not create", id)
			continue
		}
		byItem[key] = append(byItem[key], op)
	}
	keys := make([]string, 0, len(specs))
	for k := range specs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	model := claimModel()
	for _, key := range keys {
		item := ItemResult{Item: key, model: model}
		item.ops, item.Pending = itemOperations(specs[key], byItem[key], claims, f, haveFinal)
		item.Operations = len(item.ops)
		r.Items = append(r.Items, item)
	}
	sem := make(chan struct{}, opts.Parallelism)
	var wg sync.WaitGroup
	for i := range r.Items {
		wg.Add(1)
		sem <- struct{}{}
		go func(it *ItemResult) {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			switch porcupine.CheckOperationsTimeout(it.model, it.ops, opts.LinearizabilityTimeout) {
			case porcupine.Ok:
				it.Verdict = VerdictOK
			case porcupine.Illegal:
				it.Verdict = VerdictIllegal
			default:
				it.Verdict = VerdictUnknown
			}
			it.Elapsed = time.Since(t0)
		}(&r.Items[i])
	}
	wg.Wait()
	for _, it := range r.Items {
		if it.Verdict == VerdictIllegal {
			r.violate(CheckLinearizable, it.Item, "no linearization of %d operations exists", it.Operations)
		}
	}
}

func itemOperations(spec ItemSpec, ops []*operation, claims map[string]FinalClaim, f Final, haveFinal bool) ([]porcupine.Operation, int) {
	var users []string
	userIndex := map[string]int{}
	number := func(u string) int {
		i, ok := userIndex[u]
		if !ok {
			i = len(users)
			userIndex[u] = i
			users = append(users, u)
		}
		return i
	}
	for _, op := range ops {
		number(op.first.User)
	}
	var finalHeld map[int]uint64
	if haveFinal {
		finalHeld = map[int]uint64{}
		for _, c := range claims {
			if c.live() && c.Campaign == spec.Campaign && c.Item == spec.Item {
				finalHeld[number(c.User)] += uint64(c.Quantity)
			}
		}
	}
	m := newItemModel(spec, users)
	var out []porcupine.Operation
	pending := 0
	for _, op := range ops {
		if op.outcome == Refused {
			continue // no effect and no statement about the item
		}
		in := claimInput{item: m, user: userIndex[op.first.User], quantity: op.first.Quantity, requestID: op.first.RequestID}
		res := claimOutput{outcome: op.outcome, claimID: op.claimID}
		end := op.end
		if !op.definite {
			end = Pending
			if haveFinal {
				c, applied := claims[op.first.RequestID]
				if !applied || !c.live() {
					continue // had no effect: a no-op
				}
				res = claimOutput{outcome: Granted, claimID: c.ID}
				pending++
			}
		}
		out = append(out, porcupine.Operation{
			ClientId: op.first.Worker, Input: in, Call: op.first.Start, Output: res, Return: end,
			Metadata: fmt.Sprintf("request %s", op.first.RequestID),
		})
	}
	if haveFinal {
		var left uint64
		for _, it := range f.Items {
			if it.Campaign == spec.Campaign && it.Item == spec.Item {
				left = it.Available
			}
		}
		reader := 0
		for _, o := range out {
			reader = max(reader, o.ClientId+1)
		}
		out = append(out, porcupine.Operation{
			ClientId: reader, Input: claimInput{item: m, read: true},
			Call: f.ReadStart, Output: claimOutput{remaining: left, holdings: m.encodeHoldings(finalHeld)}, Return: f.ReadEnd,
			Metadata: "final read",
		})
	}
	return out, pending
}

// Summary is the report in a few lines, for people.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "claims: %d calls, %d operations: %d granted, %d sold out, %d limit reached, %d refused, %d unknown (%d applied, %d not)\n",
		r.Calls, r.Operations, r.Granted, r.SoldOut, r.LimitReached, r.Refused, r.Unknown, r.UnknownApplied, r.UnknownAbsent)
	if len(r.RefusedReasons) > 0 {
		reasons := make([]string, 0, len(r.RefusedReasons))
		for k, v := range r.RefusedReasons {
			reasons = append(reasons, fmt.Sprintf("%s %d", k, v))
		}
		slices.Sort(reasons)
		fmt.Fprintf(&b, "other refusals: %s\n", strings.Join(reasons, ", "))
	}
	verdicts := map[string]int{}
	for _, it := range r.Items {
		verdicts[it.Verdict]++
	}
	fmt.Fprintf(&b, "final state: %d claims, %d replicas\n", r.FinalClaims, r.Replicas)
	fmt.Fprintf(&b, "linearizability: %d items (%d ok, %d illegal, %d unknown: checker timed out), %d operations checked\n",
		len(r.Items), verdicts[VerdictOK], verdicts[VerdictIllegal], verdicts[VerdictUnknown], r.LinearizableOps())
	fmt.Fprintf(&b, "violations: %d\n", len(r.Violations))
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "  ... %d more (see the report file)\n", len(r.Violations)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", v)
	}
	return b.String()
}
