package chaos

import (
	"fmt"
	"sort"
	"time"

	"github.com/leasecluster/leasecluster/client"
)

// claim is evidence that a client may rely on a lease until deadline: a
// granted or renewed lease (deadline = send time + TTL - SafetyMargin; lock
// leases' renewals come from the client library's renewal observer) or the
// client library's own deadline when a lock holder used the lease.
type claim struct{ invoke, deadline int64 }

// observation is an operation that saw a lease gone (or, for alive, saw it
// alive) at some point before complete.
type observation struct {
	op    Op
	alive bool
	why   string
}

// leaseIndex is what the lease checkers need to know about one lease.
type leaseIndex struct {
	id     int64
	ttlMs  int64
	claims []claim
	obs    []observation
	// revokedAt is the first invoke of a revoke that may have deleted the
	// lease (it succeeded, or its outcome is unknown); -1 if none. A revoke
	// that failed, or answered NOT_FOUND, deleted nothing: observations
	// after it are judged like any other.
	revokedAt   int64
	lastAttempt int64 // last complete of a grant or renew attempt, whatever its outcome
	tracked     bool  // granted in the history: bounded expiry applies
}

// mayHaveDeleted reports whether a revoke or detach may have taken effect.
func mayHaveDeleted(op Op) bool {
	switch op.Kind {
	case OpRevoke:
		return op.Status == StatusInfo || (op.Status == StatusOK && op.Found)
	case OpDetach:
		return op.Status != StatusFail
	}
	return false
}

// indexHistory derives per-lease claims and observations, including the
// ones made through items: a key its lease attached and never let go of
// showing another holder (or none) means the lease was gone.
func indexHistory(ops []Op) map[int64]*leaseIndex {
	ls := map[int64]*leaseIndex{}
	get := func(id int64) *leaseIndex {
		l := ls[id]
		if l == nil {
			l = &leaseIndex{id: id, revokedAt: -1, lastAttempt: -1}
			ls[id] = l
		}
		return l
	}
	margin := func(ttlMs int64) int64 { return int64(client.SafetyMargin(time.Duration(ttlMs) * time.Millisecond)) }
	for _, op := range ops {
		switch op.Kind {
		case OpGrant:
			if op.Status == StatusOK {
				l := get(op.Lease)
				l.ttlMs = op.TTLms
				l.tracked = true
				l.claims = append(l.claims, claim{op.Invoke, op.Invoke + op.TTLms*1e6 - margin(op.TTLms)})
				l.lastAttempt = max(l.lastAttempt, op.Complete)
			}
		case OpRenew:
			l := get(op.Lease)
			l.lastAttempt = max(l.lastAttempt, op.Complete)
			if op.Status == StatusOK && op.Found {
				l.claims = append(l.claims, claim{op.Invoke, op.Invoke + op.TTLms*1e6 - margin(op.TTLms)})
				l.obs = append(l.obs, observation{op: op, alive: true, why: "renewed"})
			} else if op.Status == StatusOK {
				l.obs = append(l.obs, observation{op: op, why: "renew answered NOT_FOUND"})
			}
		case OpRevoke:
			l := get(op.Lease)
			if mayHaveDeleted(op) && l.revokedAt < 0 {
				l.revokedAt = op.Invoke
			}
			if op.Status == StatusOK {
				why := "revoke answered NOT_FOUND"
				if op.Found {
					why = "revoked"
				}
				l.obs = append(l.obs, observation{op: op, why: why})
			}
		case OpTTL:
			if op.Status == StatusOK {
				why := "TimeToLive answered NOT_FOUND"
				if op.Found {
					why = "TimeToLive found it"
				}
				get(op.Lease).obs = append(get(op.Lease).obs, observation{op: op, alive: op.Found, why: why})
			}
		case OpWrite:
			if op.Deadline > 0 {
				l := get(op.Lease)
				l.claims = append(l.claims, claim{op.Invoke, op.Deadline})
			}
		}
	}
	indexItems(ops, get)
	return ls
}

// indexItems adds the observations made through items: an op that shows
// key k not held by L after L acquired k (and before L may have let go of
// it) observes L gone; one that shows L holding k observes it alive.
func indexItems(ops []Op, get func(int64) *leaseIndex) {
	type hold struct {
		lease    int64
		acquired int64 // complete of the attach
		released int64 // first invoke of a detach or revoke that may have let go; max if none
	}
	const never = int64(1) << 62
	holds := map[string][]*hold{}
	for _, op := range ops {
		if op.Status == StatusOK && op.Kind == OpAttach {
			holds[op.Key] = append(holds[op.Key], &hold{lease: op.Lease, acquired: op.Complete, released: never})
			get(op.Lease).obs = append(get(op.Lease).obs, observation{op: op, alive: true, why: "attached " + op.Key})
		}
	}
	for _, op := range ops {
		if !mayHaveDeleted(op) {
			continue
		}
		for key, hs := range holds {
			if op.Kind == OpDetach && key != op.Key {
				continue
			}
			for _, h := range hs {
				if h.lease == op.Lease && op.Invoke >= h.acquired {
					h.released = min(h.released, op.Invoke)
				}
			}
		}
	}
	for _, op := range ops {
		if op.Status != StatusOK || (op.Kind != OpGet && op.Kind != OpAttach) {
			continue
		}
		if op.Kind == OpGet && op.Found {
			get(op.Holder).obs = append(get(op.Holder).obs, observation{op: op, alive: true, why: "get showed it holding " + op.Key})
		}
		holder := op.Holder
		if op.Kind == OpAttach {
			holder = op.Lease
		} else if !op.Found {
			holder = 0
		}
		for _, h := range holds[op.Key] {
			if h.lease == holder || op.Invoke <= h.acquired || op.Complete >= h.released {
				continue
			}
			why := fmt.Sprintf("%s of %s showed holder %d (acquired at %s)", op.Kind, op.Key, holder, ms(h.acquired))
			get(h.lease).obs = append(get(h.lease).obs, observation{op: op, why: why})
		}
	}
}

// validUntil is the latest deadline a client could claim for l at time t,
// from evidence it had before t.
func (l *leaseIndex) validUntil(t int64) int64 {
	best := int64(-1)
	for _, c := range l.claims {
		if c.invoke < t {
			best = max(best, c.deadline)
		}
	}
	return best
}

// checkNoEarlyExpiry: nothing may observe a lease gone before the deadline
// of its last acknowledged renewal (rule 2), unless a revoke that may have
// deleted it was invoked first.
func checkNoEarlyExpiry(ls map[int64]*leaseIndex) Verdict {
	var c collector
	for _, l := range sortedLeases(ls) {
		for _, o := range l.obs {
			if o.alive || (l.revokedAt >= 0 && l.revokedAt < o.op.Complete) {
				continue
			}
			c.judged++
			if until := l.validUntil(o.op.Complete); o.op.Complete < until {
				c.add("lease %d: %s (op %d) by %s, but a client may rely on it until %s (%s early)",
					l.id, o.why, o.op.Index, ms(o.op.Complete), ms(until), time.Duration(until-o.op.Complete))
			}
		}
	}
	return c.verdict(fmt.Sprintf("%d observations of unrevoked leases gone, none early", c.judged))
}

// checkResurrection: once an operation has seen a lease gone, no operation
// invoked later may see it alive.
func checkResurrection(ls map[int64]*leaseIndex) Verdict {
	var c collector
	for _, l := range sortedLeases(ls) {
		gone := int64(-1)
		var goneOp observation
		for _, o := range l.obs {
			if !o.alive && (gone < 0 || o.op.Complete < gone) {
				gone, goneOp = o.op.Complete, o
			}
		}
		if gone < 0 {
			continue
		}
		c.judged++
		for _, o := range l.obs {
			if o.alive && o.op.Invoke > gone {
				c.add("lease %d: %s (op %d) at %s, after %s (op %d) by %s",
					l.id, o.why, o.op.Index, ms(o.op.Invoke), goneOp.why, goneOp.op.Index, ms(gone))
				break
			}
		}
	}
	return c.verdict(fmt.Sprintf("%d leases seen gone, none seen alive afterwards", c.judged))
}

func sortedLeases(ls map[int64]*leaseIndex) []*leaseIndex {
	out := make([]*leaseIndex, 0, len(ls))
	for _, l := range ls {
		if l.id != 0 {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// failoverAllowance is how much longer than 2 x TTL + extend + two election
// timeouts a lease may legitimately live because of the faults overlapping
// [from, to]. An outage (a kill, a partition, a pause, a disk fault) stops
// expiry for its part inside the wait (no leader can expire anything while
// there is none, or while it is paused or cut off), then costs an election
// and the new leader's extension. Outages that overlap one another are one
// outage (the same interval is not counted twice), but outages one after
// another each stop the clock anew: after each, a new leader counts a
// checkpointed remainder from when it applied the checkpoint, which after a
// full restart is the replay. Transfers and clock faults stop no leader: all
// of them together count as one handover (election + extension), which is
// what the bound's "however many leader changes" allows.
func failoverAllowance(faults []Fault, from, to int64, cfg CheckConfig) int64 {
	handover := int64(cfg.Election + cfg.Extend)
	type span struct{ start, end int64 }
	var outages []span
	anyFault := false
	for _, f := range faults {
		if f.End <= from || f.Start >= to {
			continue
		}
		anyFault = true
		if f.Kind == NemesisTransfer || f.Kind == NemesisClock {
			continue
		}
		outages = append(outages, span{max(f.Start, from), min(f.End, to)})
	}
	if !anyFault {
		return 0
	}
	sort.Slice(outages, func(i, j int) bool { return outages[i].start < outages[j].start })
	total := int64(0)
	for i := 0; i < len(outages); {
		cur := outages[i]
		for i++; i < len(outages) && outages[i].start <= cur.end; i++ {
			cur.end = max(cur.end, outages[i].end)
		}
		total += cur.end - cur.start + handover
	}
	return max(total, handover)
}

// checkBoundedExpiry fails when a lease that nobody renews or revokes is
// seen alive later than 2 x TTL + extend + failover time after its last
// renewal attempt (rule 3; README "Bounded expiry"). The failover time is
// two election timeouts plus failoverAllowance of the faults overlapping the
// wait: overlapping outages count once, outages one after another add up,
// and handovers count as one.
func checkBoundedExpiry(ls map[int64]*leaseIndex, faults []Fault, cfg CheckConfig) Verdict {
	var c collector
	for _, l := range sortedLeases(ls) {
		if !l.tracked || l.revokedAt >= 0 || l.lastAttempt < 0 {
			continue
		}
		gone, lastAlive := int64(-1), int64(-1)
		var lastOp observation
		for _, o := range l.obs {
			switch {
			case o.alive && o.op.Invoke > lastAlive:
				lastAlive, lastOp = o.op.Invoke, o
			case !o.alive && (gone < 0 || o.op.Invoke < gone):
				gone = o.op.Invoke
			}
		}
		end := max(gone, lastAlive)
		if end < 0 {
			continue // never seen again: nothing to judge
		}
		c.judged++
		failover := 2*int64(cfg.Election) + failoverAllowance(faults, l.lastAttempt, end, cfg)
		bound := l.lastAttempt + 2*l.ttlMs*1e6 + int64(cfg.Extend) + failover
		if lastAlive > bound {
			c.add("lease %d: %s (op %d) at %s, %s after its last renewal attempt (bound %s: 2 x TTL + extend + failover %s)",
				l.id, lastOp.why, lastOp.op.Index, ms(lastAlive), time.Duration(lastAlive-l.lastAttempt),
				time.Duration(bound-l.lastAttempt), time.Duration(failover))
		}
	}
	return c.verdict(fmt.Sprintf("%d unrenewed, unrevoked leases, none alive past the bound", c.judged))
}
