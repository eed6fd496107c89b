package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/leasecluster/leasecluster/client"
)

// Verdict is one checker's result.
type Verdict struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// CheckConfig carries the cluster timings the checkers need.
type CheckConfig struct {
	Extend     time.Duration // the server's Promote extension
	Election   time.Duration // the election timeout
	LinTimeout time.Duration // porcupine's budget per check; default 60s
	ReportPath string        // where to write porcupine's HTML visualization; "" skips it
}

// Checker names, the keys of summary.json's "checkers".
const (
	CheckLinearizable  = "linearizable"
	CheckUniqueIDs     = "unique-lease-ids"
	CheckNoEarlyExpiry = "no-early-expiry"
	CheckNoOverlap     = "no-overlapping-holders"
	CheckFencing       = "fencing"
	CheckResurrection  = "no-resurrection"
	CheckBoundedExpiry = "bounded-expiry"
	CheckTTLSanity     = "ttl-sanity"
	CheckConvergence   = "convergence"
)

// maxReported bounds how many violations one verdict lists.
const maxReported = 5

// collector gathers a checker's violations into a Verdict.
type collector struct {
	n     int
	lines []string
}

func (c *collector) add(format string, args ...any) {
	c.n++
	if len(c.lines) < maxReported {
		c.lines = append(c.lines, fmt.Sprintf(format, args...))
	}
}

func (c *collector) verdict(okDetail string) Verdict {
	if c.n == 0 {
		return Verdict{OK: true, Detail: okDetail}
	}
	d := strings.Join(c.lines, "; ")
	if c.n > len(c.lines) {
		d += fmt.Sprintf("; and %d more", c.n-len(c.lines))
	}
	return Verdict{OK: false, Detail: fmt.Sprintf("%d violation(s): %s", c.n, d)}
}

func ms(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }

// Check runs every history checker (all but convergence, which needs the
// live cluster) over ops, which need not be sorted.
func Check(ops []Op, faults []Fault, cfg CheckConfig) map[string]Verdict {
	if cfg.LinTimeout == 0 {
		cfg.LinTimeout = 60 * time.Second
	}
	ops = append([]Op(nil), ops...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Invoke < ops[j].Invoke })
	ix := indexHistory(ops)
	return map[string]Verdict{
		CheckLinearizable:  checkLinearizable(ops, faults, cfg.LinTimeout, cfg.ReportPath),
		CheckUniqueIDs:     checkUniqueIDs(ops),
		CheckNoEarlyExpiry: checkNoEarlyExpiry(ix),
		CheckNoOverlap:     checkNoOverlap(ops),
		CheckFencing:       checkFencing(ops),
		CheckResurrection:  checkResurrection(ix),
		CheckBoundedExpiry: checkBoundedExpiry(ix, faults, cfg),
		CheckTTLSanity:     checkTTLSanity(ops, cfg),
	}
}

// claim is evidence that a client may rely on a lease until deadline: a
// granted or renewed lease (deadline = send time + TTL - SafetyMargin) or
// the client library's own deadline when a lock holder used the lease.
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
	id          int64
	ttlMs       int64
	claims      []claim
	obs         []observation
	revokedAt   int64 // first invoke of a revoke of this lease; -1 if none
	lastAttempt int64 // last complete of a grant or renew attempt
	tracked     bool  // granted in the history (bounded expiry applies unless lockLease)
	lockLease   bool  // renewed by the client library's KeepAlive, out of the history's sight
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
	type hold struct {
		lease    int64
		acquired int64 // complete of the attach
		released int64 // first invoke of a detach or revoke by the holder; max if none
	}
	holds := map[string][]*hold{}
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
			if l.revokedAt < 0 {
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
		if op.Kind == OpAttach || op.Kind == OpWrite {
			// A lock's lease is renewed by the client library, out of the
			// history's sight: its last renewal is unknown.
			l := get(op.Lease)
			l.lockLease = true
		}
	}
	// Items: an op that shows key k not held by L after L acquired k (and
	// before L let go of it) observes L gone.
	const never = int64(1) << 62
	for _, op := range ops {
		if op.Status != StatusOK {
			continue
		}
		switch op.Kind {
		case OpAttach:
			holds[op.Key] = append(holds[op.Key], &hold{lease: op.Lease, acquired: op.Complete, released: never})
			get(op.Lease).obs = append(get(op.Lease).obs, observation{op: op, alive: true, why: "attached " + op.Key})
		}
	}
	for _, op := range ops {
		switch op.Kind {
		case OpDetach:
			for _, h := range holds[op.Key] {
				if h.lease == op.Lease && op.Invoke >= h.acquired {
					h.released = min(h.released, op.Invoke)
				}
			}
		case OpRevoke:
			for _, hs := range holds {
				for _, h := range hs {
					if h.lease == op.Lease && op.Invoke >= h.acquired {
						h.released = min(h.released, op.Invoke)
					}
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
	return ls
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
// of its last acknowledged renewal (rule 2), unless it was revoked.
func checkNoEarlyExpiry(ls map[int64]*leaseIndex) Verdict {
	var c collector
	checked := 0
	for _, l := range sortedLeases(ls) {
		for _, o := range l.obs {
			if o.alive || (l.revokedAt >= 0 && l.revokedAt < o.op.Complete) {
				continue
			}
			checked++
			if until := l.validUntil(o.op.Complete); o.op.Complete < until {
				c.add("lease %d: %s (op %d) by %s, but a client may rely on it until %s (%s early)",
					l.id, o.why, o.op.Index, ms(o.op.Complete), ms(until), time.Duration(until-o.op.Complete))
			}
		}
	}
	return c.verdict(fmt.Sprintf("%d observations of unrevoked leases gone, none early", checked))
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
		for _, o := range l.obs {
			if o.alive && o.op.Invoke > gone {
				c.add("lease %d: %s (op %d) at %s, after %s (op %d) by %s",
					l.id, o.why, o.op.Index, ms(o.op.Invoke), goneOp.why, goneOp.op.Index, ms(gone))
				break
			}
		}
	}
	return c.verdict("no lease seen alive after it was seen gone")
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

// checkUniqueIDs: no two successful grants return the same lease ID.
func checkUniqueIDs(ops []Op) Verdict {
	var c collector
	seen := map[int64]int{}
	n := 0
	for _, op := range ops {
		if op.Kind != OpGrant || op.Status != StatusOK {
			continue
		}
		n++
		if prev, ok := seen[op.Lease]; ok {
			c.add("lease %d granted by op %d and again by op %d", op.Lease, prev, op.Index)
		}
		seen[op.Lease] = op.Index
	}
	return c.verdict(fmt.Sprintf("%d grants, all IDs distinct", n))
}

// checkTTLSanity: grants never shorten the TTL asked for, TimeToLive
// reports the granted TTL, and the remaining time never exceeds TTL + extend.
func checkTTLSanity(ops []Op, cfg CheckConfig) Verdict {
	var c collector
	granted := map[int64]int64{}
	slackMs := int64(50)
	for _, op := range ops {
		if op.Status != StatusOK {
			continue
		}
		switch {
		case op.Kind == OpGrant:
			granted[op.Lease] = op.TTLms
			if op.TTLms < op.ReqTTLms {
				c.add("grant op %d asked for %d ms and got %d ms", op.Index, op.ReqTTLms, op.TTLms)
			}
		case op.Kind == OpTTL && op.Found:
			if g, ok := granted[op.Lease]; ok && g != op.TTLms {
				c.add("TimeToLive op %d reports TTL %d ms for lease %d granted with %d ms", op.Index, op.TTLms, op.Lease, g)
			}
			if lim := op.TTLms + cfg.Extend.Milliseconds() + slackMs; op.RemainingMs > lim {
				c.add("TimeToLive op %d: lease %d has %d ms left, above TTL + extend (%d ms)", op.Index, op.Lease, op.RemainingMs, lim)
			}
		}
	}
	return c.verdict(fmt.Sprintf("%d grants", len(granted)))
}

// checkBoundedExpiry warns (it never fails the run) when a lease that
// nobody renews outlives 2 x TTL + extend + failover time (rule 3). The
// failover allowance is two election timeouts plus every fault that
// overlaps the wait.
func checkBoundedExpiry(ls map[int64]*leaseIndex, faults []Fault, cfg CheckConfig) Verdict {
	var c collector
	n := 0
	for _, l := range sortedLeases(ls) {
		if !l.tracked || l.lockLease || l.revokedAt >= 0 || l.lastAttempt < 0 {
			continue
		}
		gone := int64(-1)
		lastAlive := int64(-1)
		for _, o := range l.obs {
			if o.alive {
				lastAlive = max(lastAlive, o.op.Invoke)
			} else if gone < 0 || o.op.Invoke < gone {
				gone = o.op.Invoke
			}
		}
		end := gone
		if end < 0 {
			end = lastAlive
		}
		if end < 0 {
			continue
		}
		n++
		failover := 2 * int64(cfg.Election)
		for _, f := range faults {
			if f.End > l.lastAttempt && f.Start < end {
				failover += min(f.End, end) - max(f.Start, l.lastAttempt)
			}
		}
		bound := l.lastAttempt + 2*l.ttlMs*1e6 + int64(cfg.Extend) + failover
		if lastAlive > bound {
			c.add("lease %d still alive at %s, %s after its last renewal (bound %s)",
				l.id, ms(lastAlive), time.Duration(lastAlive-l.lastAttempt), time.Duration(bound-l.lastAttempt))
		}
	}
	v := c.verdict(fmt.Sprintf("%d unrenewed leases, all gone within the bound", n))
	if !v.OK {
		v = Verdict{OK: true, Detail: "warning: " + v.Detail}
	}
	return v
}
