package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// runEnd is what finish needs from a run.
type runEnd struct {
	opts     Options
	h        *History
	w        *workload // nil: no final read
	c        *Cluster  // nil: no convergence check
	stopAt   int64     // when the workload was told to stop (history clock)
	healedAt int64     // when every fault had healed (history clock)
	logf     func(format string, args ...any)
}

// quietPeriod is how long after the faults healed and the workload stopped
// the final read waits: the bounded-expiry bound of a lease renewed last at
// that moment with no fault in the way (2 x TTL + extend + two election
// timeouts), plus one election timeout of slack.
func quietPeriod(o Options) time.Duration { return 2*o.TTL + 4*o.Election }

// finish ends a run: it waits out the quiet period, makes the final read,
// checks convergence and the history, and writes history.jsonl,
// summary.json and report.html. When ctx is cancelled (SIGINT) the history
// recorded so far is still checked and written, with the summary (OK
// false, Cancelled true); the quiet period, final read and convergence
// check are skipped, and ctx's error is returned with the summary.
func finish(ctx context.Context, sum *Summary, r runEnd) (*Summary, error) {
	cfg := CheckConfig{Extend: r.opts.Election, Election: r.opts.Election, StopAt: r.stopAt,
		ReportPath: filepath.Join(r.opts.OutDir, "report.html")}
	if ctx.Err() == nil && r.w != nil {
		wait := time.Duration(max(r.stopAt, r.healedAt) + int64(quietPeriod(r.opts)) - r.h.Now())
		r.logf("quiet period: the final read in %v", wait.Round(time.Millisecond))
		if sleep(ctx, max(wait, 0)) {
			var granted []int64
			for _, op := range r.h.Ops() {
				if op.Kind == OpGrant && op.Status == StatusOK {
					granted = append(granted, op.Lease)
				}
			}
			r.w.finalRead(ctx, granted)
		}
	}
	if ctx.Err() == nil && r.c != nil {
		r.logf("checking replica convergence")
		v := checkConvergence(ctx, r.c)
		if v.OK {
			v.Judged = len(r.c.Nodes)
		}
		sum.Checkers[CheckConvergence] = v
	}
	cancelled := ctx.Err() != nil
	if cancelled {
		// Check what there is, quickly: the operator asked to stop.
		cfg.LinTimeout = 10 * time.Second
		sum.Cancelled = true
		sum.Notes = append(sum.Notes, fmt.Sprintf("cancelled (%v): the final read and the convergence check were skipped; the verdicts judge the history recorded until then", context.Cause(ctx)))
	}
	ops, faults := r.h.Ops(), r.h.Faults()
	sum.Ops, sum.Faults = len(ops), len(faults)
	histErr := WriteJSONL(filepath.Join(r.opts.OutDir, "history.jsonl"), ops, faults)
	r.logf("checking %d operations", len(ops))
	for k, v := range Check(ops, faults, cfg) {
		sum.Checkers[k] = v
	}
	sum.Availability, _ = Availability(ops, faults, cfg)
	sum.OK = !cancelled
	for _, v := range sum.Checkers {
		sum.OK = sum.OK && v.OK
	}
	if err := writeSummary(filepath.Join(r.opts.OutDir, "summary.json"), sum); err != nil {
		return sum, err
	}
	if histErr != nil {
		return sum, histErr
	}
	if cancelled {
		return sum, ctx.Err()
	}
	if sum.OK && r.c != nil {
		r.c.RemoveData() // logs stay; data dirs are kept only for failed runs
	}
	return sum, nil
}
