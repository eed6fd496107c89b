package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Verdict is one checker's result. A verdict that is not OK is one of three
// things: a caught bug (Caught), a checker that could not decide (Unknown:
// porcupine gave up), or a history too thin to judge (Thin). Only a caught
// bug is evidence against the system; the other two fail the run because
// they are no evidence for it either.
type Verdict struct {
	OK      bool   `json:"ok"`
	Unknown bool   `json:"unknown,omitempty"`
	Thin    bool   `json:"thin,omitempty"`
	Judged  int    `json:"judged"` // observations (operations, leases, holds...) the checker judged
	Detail  string `json:"detail"`
}

// Caught reports a checker that found a violation.
func (v Verdict) Caught() bool { return !v.OK && !v.Unknown && !v.Thin }

// CheckConfig carries the cluster timings the checkers need.
type CheckConfig struct {
	Extend     time.Duration // the server's Promote extension
	Election   time.Duration // the election timeout
	LinTimeout time.Duration // porcupine's budget per check; default 60s
	ReportPath string        // where to write porcupine's HTML visualization; "" skips it
	// Minimums is how many observations each checker must judge (keys:
	// checker names); a checker that judged fewer fails as too thin. nil
	// means DefaultMinimums; a non-nil map sets them all (missing: 0).
	Minimums map[string]int
	// StopAt is when the workload was told to stop (history clock; 0: never):
	// operations completing after it were cut short and do not count for
	// availability.
	StopAt int64
	// AvailabilityFloor is the share of operations outside fault windows
	// that must succeed; 0 means DefaultAvailabilityFloor.
	AvailabilityFloor float64
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
	CheckFinalRead     = "final-read"
	CheckAvailability  = "availability"
)

// DefaultMinimums are the observations each history checker must judge. A
// 40 s CI run judges several times these (most, ten times or more); a
// run of a few seconds does not, and fails as too thin instead of passing
// on nothing. Convergence needs every replica, which Run checks itself.
var DefaultMinimums = map[string]int{
	CheckLinearizable:  300, // operations given to porcupine
	CheckUniqueIDs:     15,  // successful grants
	CheckNoEarlyExpiry: 30,  // observations of unrevoked leases gone
	CheckNoOverlap:     4,   // lock acquisitions
	CheckFencing:       10,  // acquisitions + accepted fenced writes
	CheckResurrection:  10,  // leases seen gone, checked for a later sighting
	CheckBoundedExpiry: 4,   // abandoned, unrevoked leases whose end was seen
	CheckTTLSanity:     50,  // grants + TimeToLive answers that found the lease
	CheckFinalRead:     3,   // the final read: every lease granted, every key
	CheckAvailability:  20,  // operations outside fault windows (and recovery)
}

// DefaultAvailabilityFloor: outside fault windows (and their recovery, two
// election timeouts) a healthy majority answers; the 5% allowed are requests
// sent to a node that just stopped being the leader, or streams that break
// when a fault starts just after an operation's invoke.
const DefaultAvailabilityFloor = 0.95

// maxReported bounds how many violations one verdict lists.
const maxReported = 5

// collector gathers a checker's violations into a Verdict.
type collector struct {
	n      int
	judged int
	lines  []string
}

func (c *collector) add(format string, args ...any) {
	c.n++
	if len(c.lines) < maxReported {
		c.lines = append(c.lines, fmt.Sprintf(format, args...))
	}
}

func (c *collector) verdict(okDetail string) Verdict {
	if c.n == 0 {
		return Verdict{OK: true, Judged: c.judged, Detail: okDetail}
	}
	d := strings.Join(c.lines, "; ")
	if c.n > len(c.lines) {
		d += fmt.Sprintf("; and %d more", c.n-len(c.lines))
	}
	return Verdict{OK: false, Judged: c.judged, Detail: fmt.Sprintf("%d violation(s): %s", c.n, d)}
}

func ms(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }

// Check runs every history checker (all but convergence, which needs the
// live cluster) over ops, which need not be sorted, and fails those that
// judged fewer observations than their minimum.
func Check(ops []Op, faults []Fault, cfg CheckConfig) map[string]Verdict {
	if cfg.LinTimeout == 0 {
		cfg.LinTimeout = 60 * time.Second
	}
	ops = append([]Op(nil), ops...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Invoke < ops[j].Invoke })
	ix := indexHistory(ops)
	vs := map[string]Verdict{
		CheckLinearizable:  checkLinearizable(ops, faults, cfg.LinTimeout, cfg.ReportPath),
		CheckUniqueIDs:     checkUniqueIDs(ops),
		CheckNoEarlyExpiry: checkNoEarlyExpiry(ix),
		CheckNoOverlap:     checkNoOverlap(ops),
		CheckFencing:       checkFencing(ops),
		CheckResurrection:  checkResurrection(ix),
		CheckBoundedExpiry: checkBoundedExpiry(ix, faults, cfg),
		CheckTTLSanity:     checkTTLSanity(ops, cfg),
		CheckFinalRead:     checkFinalRead(ops),
		CheckAvailability:  checkAvailability(ops, faults, cfg),
	}
	mins := cfg.Minimums
	if mins == nil {
		mins = DefaultMinimums
	}
	for name, v := range vs {
		vs[name] = thin(name, v, mins[name])
	}
	return vs
}

// thin fails a passing verdict that judged fewer than min observations.
func thin(name string, v Verdict, min int) Verdict {
	if !v.OK || v.Judged >= min {
		return v
	}
	return Verdict{OK: false, Thin: true, Judged: v.Judged,
		Detail: fmt.Sprintf("too thin to judge: %s judged %d observation(s), fewer than its minimum %d (%s)", name, v.Judged, min, v.Detail)}
}

// checkUniqueIDs: no two successful grants return the same lease ID.
func checkUniqueIDs(ops []Op) Verdict {
	var c collector
	seen := map[int64]int{}
	for _, op := range ops {
		if op.Kind != OpGrant || op.Status != StatusOK {
			continue
		}
		c.judged++
		if prev, ok := seen[op.Lease]; ok {
			c.add("lease %d granted by op %d and again by op %d", op.Lease, prev, op.Index)
		}
		seen[op.Lease] = op.Index
	}
	return c.verdict(fmt.Sprintf("%d grants, all IDs distinct", c.judged))
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
			c.judged++
			granted[op.Lease] = op.TTLms
			if op.TTLms < op.ReqTTLms {
				c.add("grant op %d asked for %d ms and got %d ms", op.Index, op.ReqTTLms, op.TTLms)
			}
		case op.Kind == OpTTL && op.Found:
			c.judged++
			if g, ok := granted[op.Lease]; ok && g != op.TTLms {
				c.add("TimeToLive op %d reports TTL %d ms for lease %d granted with %d ms", op.Index, op.TTLms, op.Lease, g)
			}
			if lim := op.TTLms + cfg.Extend.Milliseconds() + slackMs; op.RemainingMs > lim {
				c.add("TimeToLive op %d: lease %d has %d ms left, above TTL + extend (%d ms)", op.Index, op.Lease, op.RemainingMs, lim)
			}
		}
	}
	return c.verdict(fmt.Sprintf("%d grants and TimeToLive answers, TTLs as granted", c.judged))
}
