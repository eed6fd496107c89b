package lessor

import (
	"fmt"
	"slices"
)

func (le *lessor) State() []LeaseState {
	out := le.CopyState()
	SortState(out)
	return out
}

// CopyState copies the replicated fields in chunks of sweepSize leases and
// lets the lock go between chunks, so that renewals and Promote's sweep are
// not held up for the length of a pass over a large table (rule 5). The copy
// is still one consistent cut because only replicated changes (Grant,
// Revoke, Attach, Detach, Checkpoint, Recover) touch these fields or the
// map, and the caller excludes them meanwhile: the FSM applies them on the
// goroutine that takes snapshots and holds its state lock around the copy.
// Ranging over the map across the releases is safe for the same reason
// sweepLocked's is.
func (le *lessor) CopyState() []LeaseState {
	le.mu.RLock()
	out := make([]LeaseState, 0, len(le.leases))
	n := 0
	for _, l := range le.leases {
		out = append(out, LeaseState{ID: l.ID, TTL: l.ttl, Remaining: l.remaining, Gen: l.gen, Keys: sortedKeys(l.items), Owner: l.owner})
		if n++; n%le.sweepSize == 0 {
			le.mu.RUnlock() // a waiting Renew takes the lock here
			le.mu.RLock()
		}
	}
	le.mu.RUnlock()
	return out
}

// SortState orders s by lease ID, the order State returns.
func SortState(s []LeaseState) {
	slices.SortFunc(s, func(a, b LeaseState) int { return cmpID(a.ID, b.ID) })
}

// Recover replaces every lease with leases, as decoded from a snapshot. It
// validates them all before changing anything, against the format's bounds
// only (TTLs in 1..TTLCeiling, remainders in 0..TTLCeiling), never this
// node's config: a snapshot any replica wrote restores on every other.
// Owners are restored as they are (their limits are checked by the FSM).
// Checkpointed remainders count from now, this node's apply time. rd, if not
// nil, replaces the range deleter.
func (le *lessor) Recover(leases []LeaseState, rd RangeDeleter) error {
	fresh := make(map[LeaseID]*Lease, len(leases))
	holders := make(map[string]LeaseID)
	for _, s := range leases {
		switch {
		case s.ID <= NoLease:
			return ErrInvalidID
		case checkTTL(s.TTL) != nil || s.Remaining < 0 || s.Remaining > ttlCeilingMs:
			return fmt.Errorf("%w: lease %d: TTL %d ms, remainder %d ms (allowed 1 to %d, 0 to %d)",
				ErrInvalidTTL, s.ID, s.TTL, s.Remaining, ttlCeilingMs, ttlCeilingMs)
		case fresh[s.ID] != nil:
			return ErrLeaseExists
		}
		l := &Lease{ID: s.ID, ttl: s.TTL, owner: s.Owner, le: le, remaining: s.Remaining, gen: s.Gen, expIdx: -1, cpIdx: -1}
		if len(s.Keys) > 0 {
			l.items = make(map[string]struct{}, len(s.Keys))
		}
		for _, k := range s.Keys {
			if k == "" {
				return ErrInvalidItem
			}
			if _, held := holders[k]; held {
				return ErrItemHeld
			}
			holders[k] = s.ID
			l.items[k] = struct{}{}
		}
		fresh[s.ID] = l
	}
	le.mu.Lock()
	now := le.now()
	for _, l := range fresh {
		l.cpAt = now
	}
	for _, l := range le.leases {
		l.revoked = true
	}
	le.leases, le.holders = fresh, holders
	if rd != nil {
		le.rd = rd
	}
	primary := le.primary
	epoch := le.newEpochLocked()
	if primary {
		le.promAt = now
		le.scheduleAllLocked(epoch)
	}
	le.mu.Unlock()
	le.kick()
	return nil
}
