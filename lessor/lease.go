package lessor

import (
	"slices"
	"time"
)

// Lease is one lease. Its methods are safe for concurrent use.
type Lease struct {
	ID    LeaseID
	ttl   int64  // TTL in ms, as granted (logged); never changes
	owner string // the identity that granted it (logged); never changes
	le    *lessor

	// The fields below are guarded by le.mu.
	remaining  int64  // replicated: checkpointed remainder in ms, 0 if none
	gen        uint64 // replicated: number of resets
	cpAt       int64  // local: when this node applied the checkpoint (ns)
	cpInflight bool   // local: a checkpoint was yielded and has not applied
	revoked    bool
	// Primary scheduling (this field and the ones below), valid only while
	// epoch == le.epoch. The three flags share a word: 128 bytes in all,
	// exactly a size class (the owner's string header took it from 112).
	expired bool // the primary has seen it expire; renewals are refused

	epoch    uint64
	deadline int64 // ns: the honest expiry, without extension or spreading
	expiry   int64 // ns: when the primary expires it (deadline + extend + spread)
	offerAt  int64 // expiry heap key: expiry, then the next re-offer
	cpDue    int64 // checkpoint heap key
	expIdx   int32 // position in the expiry heap, -1 if absent
	cpIdx    int32 // position in the checkpoint heap, -1 if absent

	items map[string]struct{} // allocated on first attach
}

// TTL returns the lease's TTL in milliseconds, as granted.
func (l *Lease) TTL() int64 { return l.ttl }

// Owner returns the identity that granted the lease ("" if none). It never
// changes, so it needs no lock.
func (l *Lease) Owner() string { return l.owner }

// Remaining returns how long the lease has left. On a primary that is the
// time until it expires; elsewhere an estimate from its checkpointed
// remainder, or its full TTL.
func (l *Lease) Remaining() time.Duration {
	le := l.le
	if le == nil { // a FakeLessor's lease
		return time.Duration(l.ttl) * time.Millisecond
	}
	le.rlock()
	defer le.mu.RUnlock()
	return le.remainingLocked(l, le.now())
}

// ItemCount is the number of items attached to the lease.
func (l *Lease) ItemCount() int {
	if l.le == nil {
		return 0
	}
	l.le.rlock()
	defer l.le.mu.RUnlock()
	return len(l.items)
}

// Keys returns the keys attached to the lease, sorted.
func (l *Lease) Keys() []string {
	if l.le == nil {
		return nil
	}
	l.le.rlock()
	defer l.le.mu.RUnlock()
	return sortedKeys(l.items)
}

func sortedKeys(items map[string]struct{}) []string {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Overdue is how long ago, on the lessor's clock, the primary's expiry of
// the lease fell due (its TTL, plus the extension and any spreading after a
// Promote); 0 if it is not due or not scheduled. The leader's expiry-lag
// metric reads it once the revoke has applied: rate limiting, proposing and
// applying all count.
func (l *Lease) Overdue() time.Duration {
	if l.le == nil {
		return 0
	}
	l.le.rlock()
	defer l.le.mu.RUnlock()
	if l.expiry == 0 {
		return 0
	}
	return max(0, time.Duration(l.le.now()-l.expiry))
}
