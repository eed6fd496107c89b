package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/leasecluster/leasecluster/lessor"
)

// leadership follows raft's leadership and turns it into leader terms: it
// Promotes the lessor when a term is established and Demotes it when the
// term ends, and runs the leader-only work (leaderLoops) for each term.
type leadership struct {
	rs      *raftStack
	lessor  lessor.Lessor
	log     hclog.Logger
	metrics *metrics
	notify  chan bool // raft's NotifyCh
	extend  time.Duration
	barrier time.Duration // how long one Barrier may take
	// duringTerm runs in each term once it is established: the leader
	// loops, and a DuringTerm fault if one is set.
	duringTerm func(ctx context.Context)
	// onStepDown runs after every step down (the health service's status).
	onStepDown func()

	leading atomic.Bool // promoted: serving renewals, proposals and reads
	mu      sync.Mutex  // orders Promote/Demote with leading and term
	term    *leaderTerm // guarded by mu; nil when not leading
}

// leaderTerm is one stretch of leadership; its context ends when it does.
type leaderTerm struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// isLeading reports whether this node leads and has been promoted.
func (l *leadership) isLeading() bool { return l.leading.Load() }

// current returns the context of the current leadership term, or nil.
func (l *leadership) current() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == nil {
		return nil
	}
	return l.term.ctx
}

// run is the one goroutine that reads raft's NotifyCh, until stop closes.
// Raft never blocks on that channel (it is buffered and raft overwrites a
// stale value), so this loop may wait on raft; the establishing work runs in
// the term's own goroutine all the same, so that a step-down is handled at
// once.
func (l *leadership) run(stop <-chan struct{}) {
	var term *leaderTerm
	for {
		select {
		case <-stop:
			if term != nil {
				l.stepDown(term)
			}
			return
		case isLeader := <-l.notify:
			// true while leading means leadership was lost and regained in
			// between (raft overwrote the false): end the old term first.
			if term != nil {
				l.stepDown(term)
				term = nil
			}
			if isLeader {
				term = l.startTerm()
			}
		}
	}
}

// startTerm establishes leadership in the background: Barrier (every entry of
// earlier terms is applied), Promote with the extension, then serve and run
// the leader-only work until the term ends.
func (l *leadership) startTerm() *leaderTerm {
	ctx, cancel := context.WithCancel(context.Background())
	t := &leaderTerm{ctx: ctx, cancel: cancel}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		started := time.Now()
		if !l.awaitBarrier(ctx) {
			return
		}
		l.mu.Lock()
		if ctx.Err() != nil {
			l.mu.Unlock()
			return
		}
		l.lessor.Promote(l.extend)
		l.term = t
		l.leading.Store(true)
		l.mu.Unlock()
		l.metrics.leader.Set(1)
		l.log.Info("leading", "term", l.rs.raft.CurrentTerm(), "index", l.rs.raft.AppliedIndex(), "extend", l.extend, "establish_ms", time.Since(started).Milliseconds())
		l.duringTerm(ctx)
	}()
	return t
}

// awaitBarrier retries raft's Barrier until it succeeds or the term ends.
func (l *leadership) awaitBarrier(ctx context.Context) bool {
	backoff := 50 * time.Millisecond
	for {
		err := l.rs.raft.Barrier(l.barrier).Error()
		if err == nil {
			return true
		}
		l.log.Warn("barrier failed after gaining leadership", "error", err, "term", l.rs.raft.CurrentTerm())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		}
	}
}

// stepDown ends a term: renewals stop at once (leading is false, the lessor is
// demoted), KeepAlive streams see the term's context end, and the leader
// work stops before the next term may start.
func (l *leadership) stepDown(t *leaderTerm) {
	l.mu.Lock()
	wasLeading := l.leading.Swap(false)
	l.lessor.Demote()
	l.term = nil
	t.cancel()
	l.mu.Unlock()
	t.wg.Wait()
	l.metrics.leader.Set(0)
	if wasLeading {
		l.log.Info("stepped down", "term", l.rs.raft.CurrentTerm())
	}
	l.onStepDown()
}
