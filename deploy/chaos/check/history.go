// Package check decides whether a chaos run kept flashd's promises. It takes
// the history of claims a workload made (every call, with the time it was
// sent and answered and what it learnt) and the final state read back from
// the cluster, and checks: no oversell, no lost acknowledgement, no user
// over their limit, unique claim IDs, identical replicas, and that each
// item's history is linearizable (porcupine, one partition per item).
//
// It knows nothing of how the history was made: the in-process simulation
// (deploy/chaos/sim) and the runner against real clusters
// (deploy/chaos/runner) feed it the same types.
package check

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// Outcome is what a claim call told the workload.
type Outcome string

const (
	// Granted: the call returned a claim.
	Granted Outcome = "granted"
	// SoldOut and LimitReached: definite refusals, with no effect.
	SoldOut      Outcome = "sold-out"
	LimitReached Outcome = "limit-reached"
	// Refused: another definite refusal (not found, campaign closed, ...):
	// no effect, and no statement about stock. Its reason is kept.
	Refused Outcome = "refused"
	// Unknown: the call ended without an answer (timeout, connection lost,
	// retries spent). The claim may or may not have been applied: for the
	// checker the operation is pending.
	Unknown Outcome = "unknown"
)

func (o Outcome) definite() bool { return o != Unknown }

// Pending is the return time of an operation whose outcome the client never
// learned: it may take effect at any point after its call.
const Pending int64 = math.MaxInt64

// Call is one claim call as the workload saw it. Times are nanoseconds since
// the history's start. A request ID may appear in several calls (the
// workload resumes a claim whose outcome it did not learn with the same ID);
// they are one logical operation.
type Call struct {
	Worker    int     `json:"worker"`
	Campaign  string  `json:"campaign"`
	Item      string  `json:"item"`
	User      string  `json:"user"`
	RequestID string  `json:"request_id"`
	Quantity  uint32  `json:"quantity"`
	Start     int64   `json:"start"`
	End       int64   `json:"end"`
	Outcome   Outcome `json:"outcome"`
	Reason    string  `json:"reason,omitempty"` // the server's reason for a refusal or the error for unknown
	ClaimID   uint64  `json:"claim_id,omitempty"`
	Probe     bool    `json:"probe,omitempty"` // a recovery probe, not workload traffic
}

// ItemSpec is an item as the workload created it.
type ItemSpec struct {
	Campaign     string `json:"campaign"`
	Item         string `json:"item"`
	Stock        uint64 `json:"stock"`
	PerUserLimit uint32 `json:"per_user_limit"`
}

// Key names an item across campaigns.
func (s ItemSpec) Key() string { return itemKey(s.Campaign, s.Item) }

func itemKey(campaign, item string) string { return campaign + "/" + item }

// History is everything the workload did.
type History struct {
	Seed  uint64     `json:"seed"`
	Items []ItemSpec `json:"items"`
	Calls []Call     `json:"calls"`
}

// FinalItem is an item's counters in the final state.
type FinalItem struct {
	Campaign  string `json:"campaign"`
	Item      string `json:"item"`
	Total     uint64 `json:"total"`
	Available uint64 `json:"available"`
	Reserved  uint64 `json:"reserved"`
	Sold      uint64 `json:"sold"`
}

// Claim states in the final state.
const (
	ClaimReserved = "reserved"
	ClaimSettled  = "settled"
	ClaimReleased = "released"
)

// FinalClaim is one claim record of the final state.
type FinalClaim struct {
	ID        uint64 `json:"id"`
	Campaign  string `json:"campaign"`
	Item      string `json:"item"`
	User      string `json:"user"`
	RequestID string `json:"request_id"`
	Quantity  uint32 `json:"quantity"`
	State     string `json:"state"`
}

func (c FinalClaim) live() bool { return c.State != ClaimReleased }

// NodeState is one replica's applied state, summarised.
type NodeState struct {
	ID           string `json:"id"`
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
	Err          string `json:"error,omitempty"`
}

// Final is the state read back after the run, once the cluster recovered.
// ReadStart and ReadEnd bracket the linearizable reads it was made of
// (nanoseconds since the history's start). Err says why it could not be
// read; the checks that need it then fail.
type Final struct {
	Items     []FinalItem  `json:"items"`
	Claims    []FinalClaim `json:"claims"`
	Nodes     []NodeState  `json:"nodes"`
	ReadStart int64        `json:"read_start"`
	ReadEnd   int64        `json:"read_end"`
	Err       string       `json:"error,omitempty"`
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}
