package chaos

import (
	"fmt"
	"time"
)

// ProcessFinal is the process of the final read's operations: after the
// faults healed and a quiet period, one listing of every lease (a TimeToLive
// answer per lease granted in the history, and one per lease listed) and a
// Get of every key.
const ProcessFinal = -1

// checkFinalRead: after healing and a quiet period longer than the
// bounded-expiry bound, nobody renews anything, so every lease must be gone
// and every key free (rule 3, liveness). bounded-expiry judges the same
// reads against each lease's own bound; this checker also covers leases
// whose grant had an unknown outcome and keys held by them.
func checkFinalRead(ops []Op) Verdict {
	var c collector
	for _, op := range ops {
		if op.Process != ProcessFinal {
			continue
		}
		c.judged++
		switch {
		case op.Status != StatusOK:
			c.add("final %s of %s failed: %s", op.Kind, finalTarget(op), op.Err)
		case op.Kind == OpTTL && op.Found:
			c.add("lease %d still alive at the final read (%s, %d ms left)", op.Lease, ms(op.Invoke), op.RemainingMs)
		case op.Kind == OpGet && op.Found:
			c.add("%s still held by lease %d at the final read (%s)", op.Key, op.Holder, ms(op.Invoke))
		}
	}
	return c.verdict(fmt.Sprintf("%d final reads: every lease gone, every key free", c.judged))
}

func finalTarget(op Op) string {
	if op.Key != "" {
		return op.Key
	}
	return fmt.Sprintf("lease %d", op.Lease)
}

// availabilityKinds are the operations availability counts: requests the
// cluster answers by itself. Attaches wait for other holders (a lock taken
// for long is not unavailability) and writes never reach the cluster.
var availabilityKinds = map[string]bool{OpGrant: true, OpRenew: true, OpRevoke: true, OpTTL: true, OpGet: true, OpDetach: true}

// Availability is the share of operations that succeeded among those run
// entirely outside fault windows (each window extended by two election
// timeouts of recovery) and completed before cfg.StopAt, and how many
// those were. The final read does not count.
func Availability(ops []Op, faults []Fault, cfg CheckConfig) (share float64, judged int) {
	recovery := 2 * int64(cfg.Election)
	ok := 0
	for _, op := range ops {
		if !availabilityKinds[op.Kind] || op.Process == ProcessFinal || (cfg.StopAt > 0 && op.Complete >= cfg.StopAt) {
			continue
		}
		inFault := false
		for _, f := range faults {
			if op.Complete >= f.Start && op.Invoke <= f.End+recovery {
				inFault = true
				break
			}
		}
		if inFault {
			continue
		}
		judged++
		if op.Status == StatusOK {
			ok++
		}
	}
	if judged == 0 {
		return 0, 0
	}
	return float64(ok) / float64(judged), judged
}

// checkAvailability fails a run whose availability outside faults is below
// the floor (DefaultAvailabilityFloor unless set).
func checkAvailability(ops []Op, faults []Fault, cfg CheckConfig) Verdict {
	floor := cfg.AvailabilityFloor
	if floor == 0 {
		floor = DefaultAvailabilityFloor
	}
	share, n := Availability(ops, faults, cfg)
	detail := fmt.Sprintf("%.1f%% of %d operations outside fault windows (+%v recovery) succeeded (floor %.0f%%)",
		100*share, n, 2*time.Duration(cfg.Election), 100*floor)
	if n > 0 && share < floor {
		return Verdict{OK: false, Judged: n, Detail: "below the floor: " + detail}
	}
	return Verdict{OK: true, Judged: n, Detail: detail}
}
