package server

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
)

// leaseOps are the lease and item mutations: each validates its request as
// the leader, encodes a command carrying the client's request ID (rule 6)
// and proposes it.
type leaseOps struct {
	proposer       *proposer
	lessor         lessor.Lessor
	fsm            *fsm.FSM
	minTTL, maxTTL time.Duration
	// Quotas, checked by the leader before it proposes (rule 8: apply reads
	// no flag). Concurrent grants may pass a full quota by the few that are
	// in flight together: a bound on memory, not an exact count. <0: none.
	maxLeases, maxItems int
	metrics             *metrics
	faults              *Faults
}

// actor is who a mutation acts for, as the command records it: the caller's
// identity, and whether this leader counts it an admin (decided here, from
// this node's --admin-cn, so that apply reads no flag: rule 8).
func actor(ctx context.Context) fsm.Actor {
	c := callerOf(ctx)
	return fsm.Actor{Identity: c.identity, Admin: c.admin || c.member}
}

// grant creates a lease. id 0 lets the leader choose one. ttlMs below the
// minimum is raised to it here, on the leader, and the log carries the
// effective TTL, which every replica applies as is.
func (o *leaseOps) grant(ctx context.Context, id lessor.LeaseID, ttlMs int64, reqID uint64) (lessor.LeaseID, int64, error) {
	if id < 0 {
		return 0, 0, fmt.Errorf("%w: lease ID %d is negative", ErrInvalidArgument, id)
	}
	if ttlMs <= 0 || ttlMs > o.maxTTL.Milliseconds() {
		return 0, 0, fmt.Errorf("%w: TTL %d ms is outside 1..%d", ErrInvalidArgument, ttlMs, o.maxTTL.Milliseconds())
	}
	ttlMs = max(ttlMs, o.minTTL.Milliseconds())
	if o.maxLeases >= 0 && o.lessor.Len() >= o.maxLeases {
		return 0, 0, fmt.Errorf("%w: the cluster holds %d leases, --max-leases is %d", ErrQuotaExceeded, o.lessor.Len(), o.maxLeases)
	}
	if id == lessor.NoLease {
		id = lessor.LeaseID(rand.Int64N(math.MaxInt64-1) + 1)
		if o.faults != nil && o.faults.NewLeaseID != nil {
			id = o.faults.NewLeaseID(id) // the duplicate-id variant
		}
	}
	data, err := fsm.EncodeGrant(reqID, id, ttlMs, callerOf(ctx).identity) // the lease belongs to its granter
	if err != nil {
		return 0, 0, err
	}
	res, err := o.proposer.proposeGrouped(ctx, data)
	if err != nil {
		return 0, 0, err
	}
	o.metrics.grants.Inc()
	return res.LeaseID, res.TTL, nil
}

// revoke deletes a lease and its items.
func (o *leaseOps) revoke(ctx context.Context, id lessor.LeaseID, reqID uint64) error {
	if o.faults.revokeLocally() {
		// The leader-only-revoke variant: never replicated.
		if !o.proposer.leading() {
			return o.proposer.rs.notLeader()
		}
		return o.lessor.Revoke(id)
	}
	data, err := fsm.EncodeRevoke(reqID, []lessor.LeaseID{id}, false, actor(ctx))
	if err != nil {
		return err
	}
	if _, err = o.proposer.proposeGrouped(ctx, data); err == nil {
		o.metrics.clientRevokes.Inc()
	}
	return err
}

// attach attaches (or re-attaches) an item to a lease. Attaches are not
// grouped: an item's fencing token is its entry's index (rule 7).
func (o *leaseOps) attach(ctx context.Context, leaseID lessor.LeaseID, key, value string, reqID uint64) (fsm.Item, error) {
	if err := o.itemQuota(leaseID, key); err != nil {
		return fsm.Item{}, err
	}
	if o.faults.ignoreHolder() {
		// The double-holder variant: take the key from its holder first.
		if it, held := o.fsm.Item(key); held && it.LeaseID != leaseID {
			if data, err := fsm.EncodeDetach(0, it.LeaseID, key, fsm.Actor{Admin: true}); err == nil {
				_, _ = o.proposer.propose(ctx, data)
			}
		}
	}
	if o.faults.heldInItemStore() {
		// The orphan-items variant: the item store says who holds the key.
		if it, held := o.fsm.Item(key); held && it.LeaseID != leaseID {
			return fsm.Item{}, fmt.Errorf("%w: %q is held by lease %d", lessor.ErrItemHeld, key, it.LeaseID)
		}
	}
	data, err := fsm.EncodeAttach(reqID, leaseID, key, value, actor(ctx))
	if err != nil {
		return fsm.Item{}, err
	}
	res, err := o.proposer.propose(ctx, data)
	if err != nil {
		return fsm.Item{}, err
	}
	res.Item.Revision = o.faults.fencingToken(res.Item.Revision) // changed only by the token-per-term variant
	return res.Item, nil
}

// itemQuota refuses a new item for a lease that holds --max-items-per-lease
// already; re-attaching an item the lease holds (a new value) is no new item.
func (o *leaseOps) itemQuota(leaseID lessor.LeaseID, key string) error {
	if o.maxItems < 0 {
		return nil
	}
	l := o.lessor.Lookup(leaseID)
	if l == nil || l.ItemCount() < o.maxItems {
		return nil // an unknown lease is refused by apply, as NotFound
	}
	if it, ok := o.fsm.Item(key); ok && it.LeaseID == leaseID {
		return nil
	}
	return fmt.Errorf("%w: lease %d holds %d items, --max-items-per-lease is %d", ErrQuotaExceeded, leaseID, l.ItemCount(), o.maxItems)
}

// detach detaches an item from the lease that holds it.
func (o *leaseOps) detach(ctx context.Context, leaseID lessor.LeaseID, key string, reqID uint64) error {
	data, err := fsm.EncodeDetach(reqID, leaseID, key, actor(ctx))
	if err != nil {
		return err
	}
	_, err = o.proposer.propose(ctx, data)
	return err
}
