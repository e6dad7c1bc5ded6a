package raftnode

import (
	"sync"
	"time"
)

// digestMinInterval bounds how often a node recomputes its state digest
// while its applied index keeps moving. A digest reads the whole state
// (about half a second per million claims), so an operator polling cluster
// status during a sale must not turn into a core spent hashing.
const digestMinInterval = 2 * time.Second

// digestCache holds the newest digest of the applied state. One caller at a
// time computes; others get the last finished digest meanwhile.
type digestCache struct {
	mu        sync.Mutex
	computing bool
	digest    string
	index     uint64
	at        time.Time
}

// stateDigest returns a digest of the applied state and the index it covers.
// It is fresh when the index has not moved since it was computed.
func (n *Node) stateDigest() (string, uint64) {
	c := &n.digests
	c.mu.Lock()
	applied := n.fsm.AppliedIndex()
	fresh := c.digest != "" && c.index == applied
	recent := c.digest != "" && time.Since(c.at) < digestMinInterval
	if fresh || recent || c.computing {
		d, i := c.digest, c.index
		c.mu.Unlock()
		if d == "" { // the first computation is still running
			return n.fsm.Digest()
		}
		return d, i
	}
	c.computing = true
	c.mu.Unlock()

	d, i := n.fsm.Digest()

	c.mu.Lock()
	c.digest, c.index, c.at, c.computing = d, i, time.Now(), false
	c.mu.Unlock()
	return d, i
}
