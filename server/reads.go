package server

import (
	"context"
	"fmt"
	"time"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
)

// LeaseInfo is a lease as reads return it.
type LeaseInfo struct {
	ID         lessor.LeaseID
	GrantedTTL int64 // ms
	Remaining  time.Duration
	Keys       []string // only when asked for
	Owner      string   // the identity that granted it; "" if none
}

// reader serves reads. They are linearizable unless the caller asks for a
// serializable (local) read: the leader notes the commit index, confirms its
// leadership with a quorum round, and waits until that index is applied.
type reader struct {
	rs       *raftStack
	leading  func() bool
	verifier *verifier
	applied  *appliedFSM
	lessor   lessor.Lessor
	fsm      *fsm.FSM
	faults   *Faults
}

// linearize makes a read linearizable: note the commit index, confirm
// leadership with a quorum, and wait until that index has been applied.
func (r *reader) linearize(ctx context.Context) error {
	if !r.leading() {
		if r.faults.followerReads() {
			return nil // the stale-read variant: this replica's state as is
		}
		return r.rs.notLeader()
	}
	ci := r.rs.raft.CommitIndex()
	if err := r.verifier.verify(ctx); err != nil {
		return r.rs.err(err)
	}
	return r.applied.wait(ctx, ci, r.rs.raft.AppliedIndex)
}

func (r *reader) barrier(ctx context.Context, serializable bool) error {
	if r.faults.shedRead() {
		return fmt.Errorf("%w: read shed by the rate limiter", ErrQuotaExceeded) // the shed-load variant
	}
	if serializable {
		return nil
	}
	return r.linearize(ctx)
}

// timeToLive reads one lease.
func (r *reader) timeToLive(ctx context.Context, id lessor.LeaseID, keys, serializable bool) (LeaseInfo, error) {
	if err := r.barrier(ctx, serializable); err != nil {
		return LeaseInfo{}, err
	}
	l := r.lessor.Lookup(id)
	if l == nil {
		return LeaseInfo{}, lessor.ErrLeaseNotFound
	}
	info := LeaseInfo{ID: id, GrantedTTL: l.TTL(), Remaining: l.Remaining(), Owner: l.Owner()}
	if r.faults != nil && r.faults.ReportTTL != nil {
		info.GrantedTTL = r.faults.ReportTTL(info.GrantedTTL) // the ttl-misreport variant
	}
	if keys {
		info.Keys = l.Keys()
	}
	return info, nil
}

// leases lists every lease, sorted by ID.
func (r *reader) leases(ctx context.Context, serializable bool) ([]LeaseInfo, error) {
	if err := r.barrier(ctx, serializable); err != nil {
		return nil, err
	}
	ls := r.lessor.Leases()
	out := make([]LeaseInfo, len(ls))
	for i, l := range ls {
		out[i] = LeaseInfo{ID: l.ID, GrantedTTL: l.TTL(), Remaining: l.Remaining(), Owner: l.Owner()}
	}
	return out, nil
}

// get reads one item.
func (r *reader) get(ctx context.Context, key string, serializable bool) (fsm.Item, error) {
	if err := r.barrier(ctx, serializable); err != nil {
		return fsm.Item{}, err
	}
	it, ok := r.fsm.Item(key)
	if !ok {
		return fsm.Item{}, lessor.ErrItemNotFound
	}
	return it, nil
}
