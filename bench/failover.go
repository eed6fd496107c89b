package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// FailoverResult is one system's figures for one leader kill.
type FailoverResult struct {
	KeptAlive        int     `json:"kept_alive_leases"`
	BackgroundLeases int     `json:"background_leases"`
	KilledNode       string  `json:"killed_node"`
	ResumeFirstMs    float64 `json:"resume_first_ms"` // kill to the first acknowledged renewal of any kept-alive lease
	ResumeAllMs      float64 `json:"resume_all_ms"`   // kill until every kept-alive lease has been renewed again
	MaxGapMs         float64 `json:"max_gap_ms"`      // longest interval between two acknowledgements of one lease across the kill
	NotResumed       int     `json:"not_resumed"`
	Lost             int     `json:"lost"`
	ProbeFirstOKMs   float64 `json:"probe_first_ok_ms,omitempty"` // kill to the probe's first acknowledged renewal
	ProbeMaxStallMs  float64 `json:"probe_max_stall_ms,omitempty"`
	IdleTTLSec       float64 `json:"idle_lease_ttl_s,omitempty"`
	IdleForSec       float64 `json:"idle_for_s,omitempty"`
	IdleBeforeMs     float64 `json:"idle_remaining_before_ms,omitempty"`
	IdleAfterMs      float64 `json:"idle_remaining_after_ms,omitempty"`
	IdleJumpMs       float64 `json:"idle_remaining_jump_ms,omitempty"` // after - (before - elapsed): 0 = kept, about idle time = reset
	Error            string  `json:"error,omitempty"`
}

type failoverParams struct {
	keptAlive int
	ttl       time.Duration    // of the kept-alive leases
	idleTTL   time.Duration    // 0: no idle lease
	idleFor   time.Duration    // how long the idle lease goes unrenewed before the kill (and the steady state before it)
	observe   time.Duration    // how long after the kill to watch at least
	afterKill func(killed int) // optional: runs right after the SIGKILL
	probeCSV  string           // optional: where to write the probe's renewals (ms after the kill, latency ms)
}

// worstFailover folds several kills of the same failover into one result
// that holds the worst of each figure, so that a target judged on it holds in
// every kill. The killed nodes are listed; the first error is kept.
func worstFailover(runs []FailoverResult) FailoverResult {
	if len(runs) == 0 {
		return FailoverResult{}
	}
	w := runs[0]
	var killed []string
	for _, r := range runs {
		killed = append(killed, r.KilledNode)
		w.ResumeFirstMs = max(w.ResumeFirstMs, r.ResumeFirstMs)
		w.ResumeAllMs = max(w.ResumeAllMs, r.ResumeAllMs)
		w.MaxGapMs = max(w.MaxGapMs, r.MaxGapMs)
		w.NotResumed = max(w.NotResumed, r.NotResumed)
		w.Lost = max(w.Lost, r.Lost)
		w.ProbeFirstOKMs = max(w.ProbeFirstOKMs, r.ProbeFirstOKMs)
		w.ProbeMaxStallMs = max(w.ProbeMaxStallMs, r.ProbeMaxStallMs)
		if w.Error == "" {
			w.Error = r.Error
		}
	}
	w.KilledNode = strings.Join(killed, ", ")
	return w
}

// ackTracker records, per kept-alive lease, when renewals were acknowledged
// and whether the client reported it lost.
type ackTracker struct {
	mu   sync.Mutex
	acks [][]time.Time
	lost []bool
}

func newAckTracker(n int) *ackTracker {
	return &ackTracker{acks: make([][]time.Time, n), lost: make([]bool, n)}
}

func (t *ackTracker) ack(i int, at time.Time) {
	t.mu.Lock()
	t.acks[i] = append(t.acks[i], at)
	t.mu.Unlock()
}

func (t *ackTracker) lose(i int, _ time.Time) {
	t.mu.Lock()
	t.lost[i] = true
	t.mu.Unlock()
}

// analyse measures the resumption of renewals after a kill at tk.
func (t *ackTracker) analyse(tk time.Time) (first, all, maxGap time.Duration, notResumed, lost int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first = -1
	for i, as := range t.acks {
		if t.lost[i] {
			lost++
		}
		var before, after time.Time
		for _, a := range as {
			if a.After(tk) {
				after = a
				break
			}
			before = a
		}
		if after.IsZero() {
			notResumed++
			continue
		}
		d := after.Sub(tk)
		if first < 0 || d < first {
			first = d
		}
		all = max(all, d)
		if !before.IsZero() {
			maxGap = max(maxGap, after.Sub(before))
		}
	}
	return first, all, maxGap, notResumed, lost
}

func (t *ackTracker) resumedAll(tk time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, as := range t.acks {
		if !t.lost[i] && (len(as) == 0 || !as[len(as)-1].After(tk)) {
			return false
		}
	}
	return true
}

// prober renews one lease every 5 ms over a raw stream to whichever node
// leads, reconnecting as leadership moves, and records each acknowledged
// renewal's latency: the longest after a kill is the renewal stall.
type prober struct {
	mu      sync.Mutex
	at, lat []time.Duration // offsets from start
	start   time.Time
}

func runProber(ctx context.Context, sys system, id int64) *prober {
	p := &prober{start: time.Now()}
	go func() {
		for ctx.Err() == nil {
			lctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			li, err := sys.leader(lctx)
			cancel()
			if err == nil {
				p.session(ctx, sys, li, id)
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *prober) session(ctx context.Context, sys system, li int, id int64) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sys.openStream(sctx, li)
	if err != nil {
		return
	}
	for sctx.Err() == nil {
		t0 := time.Now()
		// A stream to a node that stops answering (but keeps the connection)
		// must not hang the probe.
		watchdog := time.AfterFunc(opTimeout, cancel)
		err := st.send(id)
		if err == nil {
			_, err = st.recv()
		}
		watchdog.Stop()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.at = append(p.at, t0.Sub(p.start))
		p.lat = append(p.lat, time.Since(t0))
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

// writeCSV writes every acknowledged probe renewal as "sent ms after tk,
// latency ms", for a look at where a stall falls.
func (p *prober) writeCSV(path string, tk time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	b.WriteString("sent_after_kill_ms,latency_ms\n")
	from := tk.Sub(p.start)
	for i, at := range p.at {
		fmt.Fprintf(&b, "%.1f,%.2f\n", ms(at-from), ms(p.lat[i]))
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
}

// after returns, for renewals sent after tk, the delay to the first
// acknowledged one's send and the longest latency within window.
func (p *prober) after(tk time.Time, window time.Duration) (firstOK, maxLat time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	from := tk.Sub(p.start)
	firstOK = -1
	for i, at := range p.at {
		if at < from || at > from+window {
			continue
		}
		if firstOK < 0 {
			firstOK = at - from + p.lat[i]
		}
		maxLat = max(maxLat, p.lat[i])
	}
	return firstOK, maxLat
}

// failover keeps p.keptAlive leases alive with the system's client library,
// lets an idle lease age, SIGKILLs the leader and measures how renewals
// resume, whether any lease is lost and what happened to the idle lease's TTL.
// The killed node stays down; the caller restarts it.
func failover(ctx context.Context, sys system, p failoverParams, probe bool) (res FailoverResult, killed int) {
	res.KeptAlive = p.keptAlive
	killed = -1
	fail := func(err error) (FailoverResult, int) {
		res.Error = err.Error()
		fmt.Fprintf(os.Stderr, "  %s failover: %v\n", sys.name(), err)
		return res, killed
	}
	var idleID int64
	idleStart := time.Now()
	if p.idleTTL > 0 {
		var err error
		if idleID, err = sys.grant(ctx, 0, p.idleTTL); err != nil {
			return fail(fmt.Errorf("grant idle lease: %w", err))
		}
		res.IdleTTLSec = p.idleTTL.Seconds()
	}
	ids := make([]int64, p.keptAlive)
	if err := parallel(ctx, len(ids), 64, func(ctx context.Context, w, i int) (err error) {
		ids[i], err = sys.grant(ctx, w, p.ttl)
		return err
	}); err != nil {
		return fail(fmt.Errorf("grant kept-alive leases: %w", err))
	}
	kctx, stopKA := context.WithCancel(ctx)
	defer stopKA()
	tr := newAckTracker(len(ids))
	if err := sys.keepAliveMany(kctx, ids, tr); err != nil {
		return fail(fmt.Errorf("keepalive: %w", err))
	}
	var pr *prober
	if probe {
		pid, err := sys.grant(ctx, 0, 5*time.Second)
		if err != nil {
			return fail(fmt.Errorf("grant probe lease: %w", err))
		}
		pr = runProber(kctx, sys, pid)
	}
	// Steady state: at least three renewal rounds, and the idle lease's age.
	wait := max(p.ttl, p.idleFor-time.Since(idleStart))
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	var r0 time.Duration
	var t0 time.Time
	if idleID != 0 {
		s := time.Now()
		var err error
		if r0, err = sys.timeToLive(ctx, 0, idleID); err != nil {
			return fail(fmt.Errorf("idle lease before kill: %w", err))
		}
		t0 = s.Add(time.Since(s) / 2)
		res.IdleForSec = round3(t0.Sub(idleStart).Seconds())
	}
	li, err := sys.leader(ctx)
	if err != nil {
		return fail(err)
	}
	killed = li
	res.KilledNode = sys.nodes()[li].name
	tk := time.Now()
	sys.nodes()[li].kill()
	if p.afterKill != nil {
		p.afterKill(li)
	}
	for time.Since(tk) < 20*time.Second && !(tr.resumedAll(tk) && time.Since(tk) > p.observe) {
		time.Sleep(20 * time.Millisecond)
	}
	first, all, gap, notResumed, lost := tr.analyse(tk)
	res.ResumeFirstMs, res.ResumeAllMs, res.MaxGapMs, res.NotResumed = ms(first), ms(all), ms(gap), notResumed
	// A lease counts as lost if the client gave it up or the cluster no
	// longer has it.
	gone := make([]bool, len(ids))
	err = parallel(ctx, len(ids), 32, func(ctx context.Context, w, i int) error {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		_, err := sys.timeToLive(cctx, w, ids[i])
		if errors.Is(err, errNotFound) {
			gone[i] = true
			return nil
		}
		return err
	})
	if err != nil {
		res.Error = "checking leases: " + err.Error()
	}
	tr.mu.Lock()
	for i := range gone {
		if gone[i] || tr.lost[i] {
			res.Lost++
		}
	}
	tr.mu.Unlock()
	_ = lost
	if pr != nil {
		firstOK, stall := pr.after(tk, 10*time.Second)
		res.ProbeFirstOKMs, res.ProbeMaxStallMs = ms(firstOK), ms(stall)
		if p.probeCSV != "" {
			pr.writeCSV(p.probeCSV, tk)
		}
	}
	if idleID != 0 {
		s := time.Now()
		r1, err := sys.timeToLive(ctx, 0, idleID)
		if err != nil {
			res.Error = "idle lease after kill: " + err.Error()
		} else {
			t1 := s.Add(time.Since(s) / 2)
			res.IdleBeforeMs, res.IdleAfterMs = ms(r0), ms(r1)
			res.IdleJumpMs = ms(r1 - (r0 - t1.Sub(t0)))
		}
	}
	fmt.Fprintf(os.Stderr, "  %-13s failover: resume first %.0f ms, all %.0f ms, lost %d, not resumed %d, idle jump %.0f ms, probe stall %.1f ms\n",
		sys.name(), res.ResumeFirstMs, res.ResumeAllMs, res.Lost, res.NotResumed, res.IdleJumpMs, res.ProbeMaxStallMs)
	return res, killed
}
