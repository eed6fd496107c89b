package server

import (
	"context"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
)

// leadershipLoop is the one goroutine that reads raft's NotifyCh. Raft never
// blocks on that channel (it is buffered and raft overwrites a stale value),
// so this loop may wait on raft; the establishing work runs in the term's own
// goroutine all the same, so that a step-down is handled at once.
func (n *Node) leadershipLoop() {
	defer n.loops.Done()
	var term *leaderTerm
	for {
		select {
		case <-n.stopC:
			if term != nil {
				n.stepDown(term)
			}
			return
		case isLeader := <-n.notifyCh:
			// true while leading means leadership was lost and regained in
			// between (raft overwrote the false): end the old term first.
			if term != nil {
				n.stepDown(term)
				term = nil
			}
			if isLeader {
				term = n.startTerm()
			}
		}
	}
}

// startTerm establishes leadership in the background: Barrier (every entry of
// earlier terms is applied), Promote with the extension, then serve and run
// the leader-only loops until the term ends.
func (n *Node) startTerm() *leaderTerm {
	ctx, cancel := context.WithCancel(context.Background())
	t := &leaderTerm{ctx: ctx, cancel: cancel}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		started := time.Now()
		backoff := 50 * time.Millisecond
		for {
			err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
			if err == nil {
				break
			}
			n.log.Warn("barrier failed after gaining leadership", "error", err, "term", n.raft.CurrentTerm())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
				backoff = min(2*backoff, time.Second)
			}
		}
		n.termMu.Lock()
		if ctx.Err() != nil {
			n.termMu.Unlock()
			return
		}
		n.lessor.Promote(n.cfg.Extend)
		n.term = t
		n.leading.Store(true)
		n.termMu.Unlock()
		n.metrics.leader.Set(1)
		n.log.Info("leading", "term", n.raft.CurrentTerm(), "index", n.raft.AppliedIndex(), "extend", n.cfg.Extend, "establish_ms", time.Since(started).Milliseconds())
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			n.checkpointLoop(ctx)
		}()
		if chaosBuild && chaosBugIs(bugEarlyExpiry) {
			n.chaosEarlyExpiry(t)
		}
		n.expiryLoop(ctx)
	}()
	return t
}

// stepDown ends a term: renewals stop at once (leading is false, the lessor is
// demoted), KeepAlive streams see the term's context end, and the leader
// loops stop before the next term may start.
func (n *Node) stepDown(t *leaderTerm) {
	n.termMu.Lock()
	wasLeading := n.leading.Swap(false)
	n.lessor.Demote()
	n.term = nil
	t.cancel()
	n.termMu.Unlock()
	t.wg.Wait()
	n.metrics.leader.Set(0)
	if wasLeading {
		n.log.Info("stepped down", "term", n.raft.CurrentTerm())
	}
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
}

// currentTerm returns the context of the current leadership term, or nil.
func (n *Node) currentTerm() context.Context {
	n.termMu.Lock()
	defer n.termMu.Unlock()
	if n.term == nil {
		return nil
	}
	return n.term.ctx
}

// expiryLoop proposes revokes for the leases the lessor reports expired. The
// lessor paces delivery at the revoke rate and offers a lease again until it
// is revoked, so a failed proposal is retried without bookkeeping here.
func (n *Node) expiryLoop(ctx context.Context) {
	ids := make([]lessor.LeaseID, 0, 1024)
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-n.lessor.ExpiredLeasesC():
			ids = ids[:0]
			for _, l := range batch {
				// Checked right before proposing: an expired lease cannot be
				// renewed again in this term, so the revoke cannot undercut
				// an acknowledged renewal.
				if n.lessor.Expired(l.ID) {
					ids = append(ids, l.ID)
				}
			}
			if len(ids) == 0 {
				continue
			}
			data, err := fsm.EncodeRevoke(0, ids, true)
			if err != nil {
				n.log.Error("encode revoke", "error", err)
				continue
			}
			if err := n.raft.Apply(data, n.cfg.ApplyTimeout).Error(); err != nil {
				n.log.Warn("revoking expired leases failed; they will be offered again", "leases", len(ids), "error", err)
				continue
			}
			n.metrics.expired.Add(float64(len(ids)))
		}
	}
}

// checkpointLoop replicates the checkpoints the lessor yields (rule 3).
func (n *Node) checkpointLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case cps := <-n.lessor.CheckpointsC():
			data, err := fsm.EncodeCheckpoint(cps)
			if err != nil {
				n.log.Error("encode checkpoint", "error", err)
				continue
			}
			if err := n.raft.Apply(data, n.cfg.ApplyTimeout).Error(); err != nil {
				n.log.Warn("checkpoint failed; the lessor offers it again", "leases", len(cps), "error", err)
				continue
			}
			n.metrics.checkpoints.Add(float64(len(cps)))
		}
	}
}
