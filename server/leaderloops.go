package server

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
)

// leaderLoops is the work only a leader does, for the length of one term:
// proposing revokes of expired leases and replicating checkpoints (rule 3).
// Followers never expire anything.
type leaderLoops struct {
	lessor   lessor.Lessor
	proposer *proposer
	log      hclog.Logger
	metrics  *metrics
	faults   *Faults
}

// run runs the loops until ctx (the term) ends, and returns once they have.
func (ll *leaderLoops) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { ll.checkpoints(ctx) })
	if ll.faults != nil && ll.faults.DuringTerm != nil {
		wg.Go(func() { ll.faults.DuringTerm(ctx, ll) })
	}
	ll.expiry(ctx)
	wg.Wait()
}

// Leases lists the lessor's leases (Term, for a DuringTerm fault).
func (ll *leaderLoops) Leases() []*lessor.Lease { return ll.lessor.Leases() }

// RevokeExpired proposes one expiry revoke of ids.
func (ll *leaderLoops) RevokeExpired(ctx context.Context, ids []lessor.LeaseID) error {
	data, err := fsm.EncodeRevoke(0, ids, true, fsm.Actor{})
	if err != nil {
		return err
	}
	_, err = ll.proposer.propose(ctx, data)
	return err
}

// Grant proposes a grant of id without a request ID (Term, for a DuringTerm
// fault).
func (ll *leaderLoops) Grant(ctx context.Context, id lessor.LeaseID, ttlMs int64, owner string) error {
	data, err := fsm.EncodeGrant(0, id, ttlMs, owner)
	if err != nil {
		return err
	}
	_, err = ll.proposer.propose(ctx, data)
	return err
}

// expiry proposes revokes for the leases the lessor reports expired. The
// lessor paces delivery at the revoke rate and offers a lease again until it
// is revoked, so a failed proposal is retried without bookkeeping here.
func (ll *leaderLoops) expiry(ctx context.Context) {
	ids := make([]lessor.LeaseID, 0, 1024)
	proposed := make([]*lessor.Lease, 0, 1024)
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-ll.lessor.ExpiredLeasesC():
			if ll.faults.skipExpiry() {
				continue // the immortal-lease variant
			}
			ids, proposed = ids[:0], proposed[:0]
			for _, l := range batch {
				// Checked right before proposing: an expired lease cannot be
				// renewed again in this term, so the revoke cannot undercut
				// an acknowledged renewal.
				if ll.lessor.Expired(l.ID) {
					ids = append(ids, l.ID)
					proposed = append(proposed, l)
				}
			}
			if len(ids) == 0 {
				continue
			}
			if err := ll.RevokeExpired(ctx, ids); err != nil {
				ll.log.Warn("revoking expired leases failed; they will be offered again", "leases", len(ids), "error", err)
				continue
			}
			ll.metrics.expiredRevokes(proposed) // the lag: from each lease's due time to now, applied
		}
	}
}

// checkpoints replicates the checkpoints the lessor yields (rule 3).
func (ll *leaderLoops) checkpoints(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case cps := <-ll.lessor.CheckpointsC():
			data, err := fsm.EncodeCheckpoint(cps)
			if err != nil {
				ll.log.Error("encode checkpoint", "error", err)
				continue
			}
			if _, err := ll.proposer.propose(ctx, data); err != nil {
				ll.log.Warn("checkpoint failed; the lessor offers it again", "leases", len(cps), "error", err)
				continue
			}
			ll.metrics.checkpoints.Add(float64(len(cps)))
		}
	}
}
