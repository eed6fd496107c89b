package main

import (
	"fmt"
	"slices"
)

// phaseRan reports whether the run included phase. The memory phase also
// runs for the scale and restart phases, which need its filled table.
func (r *Results) phaseRan(phase string) bool {
	ph := r.Settings.Phases
	return ph.has(phase) || phase == phaseMemory && (ph.has(phaseScale) || ph.has(phaseRestart))
}

// size is the table phases' figures at n leases (zero if none).
func (r *Results) size(n int) TableSize {
	for _, s := range r.Sizes {
		if s.Leases == n {
			return s
		}
	}
	return TableSize{Leases: n}
}

// need is what a target's figures come from: a phase, run on leasecluster
// and, for a comparison, on etcd too; for the table phases, at a table size
// (0: none).
type need struct {
	phase string
	etcd  bool
	size  int
}

// ran reports whether the run measured what n needs. A run of the restart
// phase without memory or scale fills only the largest table.
func (r *Results) ran(n need) bool {
	sy := r.Settings.Systems
	return r.phaseRan(n.phase) && sy.has(sysLC) && (!n.etcd || sy.has(sysEtcd)) &&
		(n.size == 0 || slices.Contains(r.Settings.tableSizes(), n.size))
}

func (r *Results) pair(w string) Pair {
	for _, p := range r.Throughput {
		if p.Workload == w {
			return p
		}
	}
	return Pair{}
}

// evaluate checks every target. A target whose phase, or a system it
// compares, was left out of the run is marked not run rather than judged on
// zeros.
func (r *Results) evaluate() {
	var (
		throughput  = need{phaseThroughput, true, 0}
		failoverCmp = need{phaseFailover, true, 0}
		failoverLC  = need{phaseFailover, false, 0}
		expiryLC    = need{phaseExpiry, false, 0}
	)
	// etcd formats etcd's figure for beside leasecluster's, if etcd ran.
	etcd := func(format string, v any) string {
		if !r.Settings.Systems.has(sysEtcd) {
			return ""
		}
		return " (etcd " + fmt.Sprintf(format, v) + ")"
	}
	add := func(n need, name, want, got string, met bool, workload string) {
		t := Target{Name: name, Want: want, Got: got, Met: met, Workload: workload}
		if !r.ran(n) {
			t.Met, t.NotRun, t.Got = false, true, "-"
		}
		r.Targets = append(r.Targets, t)
	}
	thr := func(w string, min float64) {
		p := r.pair(w)
		add(throughput, w+" throughput", fmt.Sprintf(">= %.1fx etcd", min),
			fmt.Sprintf("%.3fx (%.0f vs %.0f ops/s)", p.Thr, p.LC.Throughput, p.Etcd.Throughput), p.Thr >= min && p.LC.Errors == 0, w)
	}
	thr(wGrant64, 3)
	// Three decimals: a ratio that two would round onto its threshold
	// (0.752 as "0.75x") would read as met beside "MISSED".
	p := r.pair(wGrant1)
	add(throughput, "grant c=1 p50 latency", "<= 0.75x etcd", fmt.Sprintf("%.3fx (%.3f vs %.3f ms)", p.P50, p.LC.P50Ms, p.Etcd.P50Ms),
		p.P50 > 0 && p.P50 <= 0.75, wGrant1)
	thr(wRevoke64, 10)
	thr(wKA64, 1.5)
	thr(wKA256, 1.5)
	thr(wKAFollower, 3)
	thr(wTTL64, 1)

	f := r.Failover
	// A system on which some leases were never renewed again has no "all
	// renewed" time (its field stays 0): it never caught up, so it is the
	// slower one, not the faster.
	// A system whose run failed has no figures at all: say so rather than
	// compare with its zeros.
	resumed := func(x FailoverResult) string {
		switch {
		case x.Error != "":
			return "not measured (" + x.Error + ")"
		case x.NotResumed > 0:
			return fmt.Sprintf("never (%d not renewed again)", x.NotResumed)
		}
		return fmt.Sprintf("%.0f ms", x.ResumeAllMs)
	}
	add(failoverCmp, "failover: renewals resume", "all leases renewed no later than on etcd",
		fmt.Sprintf("%s vs %s (first renewal %.0f vs %.0f ms)", resumed(f.LC), resumed(f.Etcd), f.LC.ResumeFirstMs, f.Etcd.ResumeFirstMs),
		f.LC.Error == "" && f.Etcd.Error == "" && f.LC.NotResumed == 0 && (f.Etcd.NotResumed > 0 || f.LC.ResumeAllMs <= f.Etcd.ResumeAllMs), "")
	add(failoverLC, "failover: no lease lost", "0 of 1,000", fmt.Sprintf("%d", f.LC.Lost)+etcd("%d", f.Etcd.Lost), f.LC.Error == "" && f.LC.Lost == 0, "")
	add(failoverLC, "failover: idle lease keeps its remaining TTL", "jump within the extension (0 to 1 s, +-250 ms measurement)",
		fmt.Sprintf("%+.0f ms", f.LC.IdleJumpMs)+etcd("%+.0f ms", f.Etcd.IdleJumpMs),
		f.LC.IdleBeforeMs > 0 && f.LC.IdleJumpMs >= -250 && f.LC.IdleJumpMs <= 1250, "")

	e := r.Expiry
	add(expiryLC, fmt.Sprintf("expiry: %d simultaneous expiries", r.Settings.ExpiryLeases), "all revoked within 2 s of due",
		revoked(e.LC)+etcd("%s", revoked(e.Etcd))+fmt.Sprintf("; renewal p99 during the storm %.1f ms", e.LC.RenewP99Ms)+etcd("%.1f ms", e.Etcd.RenewP99Ms),
		e.LC.Error == "" && e.LC.RevokedAfterMs <= 2000, "")

	// The table phases' targets hold at every table size the run used.
	for _, n := range r.Settings.TableSizes {
		r.tableTargets(n, add, etcd)
	}
}

// tableTargets adds the memory and scale targets at a table of n leases.
// Figures never measured (a table that did not fill) miss rather than pass
// on zeros.
func (r *Results) tableTargets(n int, add func(need, string, string, string, bool, string), etcd func(string, any) string) {
	ts := r.size(n)
	m := ts.Memory
	mr := ratio(m.LC.PerHundredKMiB, m.Etcd.PerHundredKMiB)
	add(need{phaseMemory, true, n}, fmt.Sprintf("memory (%d leases): leader RSS growth per lease", n), "<= 0.5x etcd",
		fmt.Sprintf("%.2fx (%.1f vs %.1f MiB per 100k)", mr, m.LC.PerHundredKMiB, m.Etcd.PerHundredKMiB),
		m.LC.Leases == n && m.Etcd.Leases == n && m.LC.Error == "" && m.Etcd.Error == "" && mr <= 0.5, "")

	s, se := ts.Scale.LC, ts.Scale.Etcd
	ok := s.Error == "" && s.KeptAlive > 0
	scaleLC := need{phaseScale, false, n}
	add(scaleLC, fmt.Sprintf("scale (%d leases): no kept-alive lease lost", n), "0 of 1,000",
		fmt.Sprintf("%d", s.Lost)+etcd("%d", se.Lost), ok && s.Lost == 0, "")
	add(scaleLC, fmt.Sprintf("scale (%d leases): renewals resume", n), "<= 2 s",
		fmt.Sprintf("%.0f ms for all", s.ResumeAllMs)+etcd("%.0f ms", se.ResumeAllMs), ok && s.NotResumed == 0 && s.ResumeAllMs <= 2000, "")
	add(scaleLC, fmt.Sprintf("scale (%d leases): longest renewal stall during Promote", n), "<= 50 ms",
		fmt.Sprintf("%.1f ms", s.ProbeMaxStallMs)+etcd("%.1f ms", se.ProbeMaxStallMs), ok && s.ProbeFirstOKMs > 0 && s.ProbeMaxStallMs <= 50, "")
}
