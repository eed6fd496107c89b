package lessor

import "time"

func (le *lessor) IsPrimary() bool {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.primary
}

// Promote starts a primary term. A large table's leases are scheduled by a
// sweep (sweep.go) that lets the lock go every few dozen leases; a lease
// renewed or granted before the sweep reaches it is already scheduled and is
// skipped. Promote itself does O(1) work for a large table: its caller holds
// up everything that waits for the new term until it returns.
func (le *lessor) Promote(extend time.Duration) {
	le.mu.Lock()
	le.primary = true
	le.extend = int64(max(extend, 0))
	le.promAt = le.now()
	epoch := le.newEpochLocked()
	le.scheduleAllLocked(epoch)
	le.mu.Unlock()
	le.kick()
}

// Demote ends the primary term in O(1): the heaps are dropped and every
// lease's scheduling fields become stale with the epoch.
func (le *lessor) Demote() {
	le.mu.Lock()
	le.primary = false
	le.newEpochLocked()
	le.mu.Unlock()
	le.kick()
}

// newEpochLocked invalidates all scheduling and drops undelivered batches,
// which belong to the term that just ended.
func (le *lessor) newEpochLocked() uint64 {
	le.epoch++
	le.expHeap.reset()
	le.cpHeap.reset()
	le.expBkt = bucket{last: le.now()}
	le.cpBkt = bucket{last: le.now()}
	for {
		select {
		case <-le.expiredC:
			continue
		case <-le.cpC:
			continue
		default:
		}
		return le.epoch
	}
}

// renewLocked restarts l's TTL on a primary at now.
func (le *lessor) renewLocked(l *Lease, now int64) {
	ttl := l.ttl * int64(time.Millisecond)
	if l.epoch != le.epoch {
		l.epoch, l.expIdx, l.cpIdx = le.epoch, -1, -1
	}
	l.expired = false
	l.deadline = now + ttl
	l.expiry = l.deadline
	l.offerAt = l.expiry
	l.cpDue = now + ttl/2
	le.expHeap.fix(l)
	le.cpHeap.fix(l)
	if le.expHeap.top() == l || le.cpHeap.top() == l {
		le.kick()
	}
}

// unscheduleLocked takes l out of both heaps if it is in them.
func (le *lessor) unscheduleLocked(l *Lease) {
	if l.epoch == le.epoch {
		le.expHeap.remove(l)
		le.cpHeap.remove(l)
	}
}

// expiredLocked reports whether the primary has let l expire by now.
func (le *lessor) expiredLocked(l *Lease, now int64) bool {
	if l.epoch != le.epoch {
		return false
	}
	if !l.expired && l.expiry <= now {
		l.expired = true
	}
	return l.expired
}

func (le *lessor) Renew(id LeaseID) (int64, error) {
	le.lock()
	defer le.mu.Unlock()
	return le.renewIDLocked(id, le.now())
}

// renewAllChunk bounds the renewals RenewAll makes under one hold of the
// lock, so that a large batch does not hold up everything else.
const renewAllChunk = 256

// RenewAll reads the clock once per chunk: that instant follows the arrival
// of every renewal in the chunk, so each still gets at least its TTL from
// when it arrived.
func (le *lessor) RenewAll(rs []Renewal) {
	for len(rs) > 0 {
		n := min(len(rs), renewAllChunk)
		le.lock()
		now := le.now()
		for i := range rs[:n] {
			rs[i].TTL, rs[i].Err = le.renewIDLocked(rs[i].ID, now)
		}
		le.mu.Unlock()
		rs = rs[n:]
	}
}

func (le *lessor) renewIDLocked(id LeaseID, now int64) (int64, error) {
	if !le.primary {
		return -1, ErrNotPrimary
	}
	l := le.leases[id]
	if l == nil {
		return -1, ErrLeaseNotFound
	}
	if le.expiredLocked(l, now) {
		return -1, ErrLeaseExpired
	}
	if l.remaining > 0 || l.cpInflight {
		return -1, ErrResetRequired
	}
	le.renewLocked(l, now)
	return l.ttl, nil
}

func (le *lessor) Expired(id LeaseID) bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	l := le.leases[id]
	return le.primary && l != nil && le.expiredLocked(l, le.now())
}

// remainingLocked is Lease.Remaining under the lock.
func (le *lessor) remainingLocked(l *Lease, now int64) time.Duration {
	var until int64
	switch {
	case l.revoked:
		return 0
	case le.primary && l.epoch == le.epoch:
		if l.expired {
			return 0
		}
		until = l.expiry
	case l.remaining > 0:
		until = l.cpAt + l.remaining*int64(time.Millisecond)
		if le.primary { // not swept yet: what the sweep will give it
			until += le.extend
		}
	case le.primary:
		until = le.promAt + le.extend + l.ttl*int64(time.Millisecond)
	default:
		return time.Duration(l.ttl) * time.Millisecond
	}
	return time.Duration(max(until-now, 0))
}

// Checkpoint applies replicated checkpoints. Checkpoints for unknown leases
// are ignored: the lease was revoked after the checkpoint was proposed.
func (le *lessor) Checkpoint(cps []Checkpoint) {
	le.lock()
	defer le.mu.Unlock()
	now := le.now()
	for i, cp := range cps {
		// Yielding is safe here: replicated changes are applied one at a
		// time, and each checkpoint stands alone (a renewal in between sees
		// this checkpoint applied or not yet). A changed term does not
		// matter: the replicated fields are set all the same.
		if i%yieldEvery == yieldEvery-1 {
			le.yieldLocked(le.epoch)
		}
		l := le.leases[cp.ID]
		if l == nil {
			continue
		}
		if cp.Remaining <= 0 {
			// A reset: renewals may proceed, and any checkpoint computed
			// before it is stale.
			l.remaining, l.cpInflight = 0, false
			l.gen++
			continue
		}
		if cp.Gen != l.gen {
			continue
		}
		l.remaining, l.cpAt, l.cpInflight = cp.Remaining, now, false
		if l.epoch == le.epoch {
			le.cpHeap.remove(l)
		}
	}
}

// run is the primary's one background goroutine: it delivers expired leases
// and due checkpoints, and sleeps until the next is due.
func (le *lessor) run() {
	defer le.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := le.deliver()
		timer.Reset(wait)
		select {
		case <-le.stopC:
			return
		case <-le.kickC:
		case <-timer.C:
		}
	}
}

// maxWait bounds every sleep so that a clock that jumps is noticed.
const maxWait = 250 * time.Millisecond

// deliver sends what is due and returns how long to sleep.
func (le *lessor) deliver() time.Duration {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return time.Hour
	}
	epoch, now := le.epoch, le.now()
	next := now + int64(maxWait)
	next = min(next, le.deliverExpired(epoch, now))
	if le.epoch != epoch {
		return time.Millisecond // the term changed while yielding
	}
	next = min(next, le.deliverCheckpoints(epoch, now))
	return time.Duration(max(next-now, int64(time.Millisecond)))
}

// retryWait is how long to wait for a full channel or an empty bucket.
func (le *lessor) retryWait(now int64) int64 {
	if le.cfg.RevokeRate <= 0 {
		return now + int64(10*time.Millisecond)
	}
	return now + max(int64(le.cfg.BatchSize)*1e9/int64(le.cfg.RevokeRate), int64(time.Millisecond))
}

// deliverExpired and deliverCheckpoints each deliver up to a batch of what
// is due at now, yielding the lock to waiting renewals as they go (a batch
// of a thousand moves as many leases through a heap of up to millions). If
// the term changes meanwhile, the batch being built is dropped, as
// newEpochLocked drops delivered ones.
func (le *lessor) deliverExpired(epoch uint64, now int64) int64 {
	h, retry := &le.expHeap, int64(le.cfg.RetryInterval)
	for h.Len() > 0 && h.top().offerAt <= now {
		if len(le.expiredC) == cap(le.expiredC) {
			return le.retryWait(now)
		}
		n := le.expBkt.take(now, le.cfg.BatchSize, le.cfg.RevokeRate, le.cfg.BatchSize)
		if n == 0 {
			return le.retryWait(now)
		}
		batch := make([]*Lease, 0, min(n, h.Len()))
		for len(batch) < n && h.Len() > 0 && h.top().offerAt <= now {
			l := h.top()
			l.expired = true
			l.offerAt = now + retry // offered again until revoked
			h.fix(l)
			batch = append(batch, l)
			if len(batch)%yieldEvery == 0 && !le.yieldLocked(epoch) {
				return now
			}
		}
		le.expBkt.tokens += float64(n - len(batch))
		le.expiredC <- batch
	}
	if h.Len() > 0 {
		return h.top().offerAt
	}
	return now + int64(maxWait)
}

func (le *lessor) deliverCheckpoints(epoch uint64, now int64) int64 {
	h, retry := &le.cpHeap, int64(le.cfg.RetryInterval)
	for h.Len() > 0 && h.top().cpDue <= now {
		if len(le.cpC) == cap(le.cpC) {
			return le.retryWait(now)
		}
		n := le.cpBkt.take(now, le.cfg.BatchSize, le.cfg.RevokeRate, le.cfg.BatchSize)
		if n == 0 {
			return le.retryWait(now)
		}
		batch := make([]Checkpoint, 0, min(n, h.Len()))
		for k := 1; len(batch) < n && h.Len() > 0 && h.top().cpDue <= now; k++ {
			if k%yieldEvery == 0 && !le.yieldLocked(epoch) {
				return now
			}
			l := h.top()
			if l.expired || l.remaining > 0 {
				h.remove(l) // expiry will take it, or it has its checkpoint
				continue
			}
			rem := (l.deadline - now + int64(time.Millisecond) - 1) / int64(time.Millisecond)
			l.cpInflight = true
			l.cpDue = now + retry
			h.fix(l)
			batch = append(batch, Checkpoint{ID: l.ID, Remaining: max(rem, 1), Gen: l.gen})
		}
		le.cpBkt.tokens += float64(n - len(batch))
		if len(batch) > 0 {
			le.cpC <- batch
		}
	}
	if h.Len() > 0 {
		return h.top().cpDue
	}
	return now + int64(maxWait)
}
