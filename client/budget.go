package client

import (
	"sync"
	"time"
)

// retryBudgetRatioMax bounds the ratio of a retry budget: more than 10
// retries per first try is no budget at all.
const retryBudgetRatioMax = 10

// A budget saves up at most retryBudgetWindow seconds of its minimum, and
// never less than retryBudgetBurstMin retries: that caps the burst of
// retries a client can make at once, after a quiet spell or when many
// calls fail together.
const (
	retryBudgetWindow   = 10
	retryBudgetBurstMin = 10
)

// retryBudget throttles the retries of all the calls of one client, in the
// manner of Finagle's RetryBudget and gRPC's retry throttling: a first try
// deposits ratio tokens, a retry withdraws one, and minPerSecond tokens are
// deposited every second whatever the traffic. The balance starts full and
// is capped (retryBudgetWindow seconds of the minimum), so over any stretch
// of time
//
//	retries <= ratio * first tries + minPerSecond * seconds + cap.
//
// A nil *retryBudget is no budget: every retry is allowed.
type retryBudget struct {
	ratio, perSecond float64
	now              func() time.Time

	capacity float64

	mu      sync.Mutex
	balance float64
	last    time.Time // when the time-based deposit was last made
}

func newRetryBudget(ratio, perSecond float64, now func() time.Time) *retryBudget {
	capacity := max(retryBudgetBurstMin, perSecond*retryBudgetWindow)
	return &retryBudget{ratio: ratio, perSecond: perSecond, now: now, balance: capacity, capacity: capacity, last: now()}
}

// firstTry deposits a first try's share.
func (b *retryBudget) firstTry() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.balance = min(b.capacity, b.balance+b.ratio)
}

// withdraw takes one retry's token and reports whether there was one.
func (b *retryBudget) withdraw() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.balance = min(b.capacity, b.balance+elapsed.Seconds()*b.perSecond)
		b.last = now
	}
	if b.balance < 1 {
		return false
	}
	b.balance--
	return true
}
