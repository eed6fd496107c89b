package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
)

// RenewResult is the outcome of one renewal.
type RenewResult = lessor.Renewal

// renewer is the one renewal path. Renewals are not log entries: the
// leader's lessor resets each lease's expiry in memory, and the answer waits
// for leadership to be confirmed for a time after the renewal (rule 2),
// either by raft's recent quorum contacts (renewLease) or by a VerifyLeader
// round that starts after it and that concurrent renewals share (verifier).
// Both the KeepAlive stream (keepalive.go) and renew go through start.
type renewer struct {
	rs       *raftStack
	lessor   lessor.Lessor
	proposer *proposer
	leading  func() bool
	verifier *verifier
	lease    renewLease // lets renewals skip the verifier while raft's contacts are fresh
	metrics  *metrics
	faults   *Faults
	// owners: leases may belong to identities (TLS is on), so a renewal is
	// checked against its lease's owner first.
	owners bool
	// now is the clock the renew-lease window is measured on, the one the
	// transport notes its contacts' send times on (Config.Clock).
	now func() time.Time
}

// renew renews ids, waits for their confirmation and appends one result per
// lease to out. If leadership cannot be confirmed the error is returned for
// the whole batch and nothing is appended.
func (r *renewer) renew(ctx context.Context, ids []lessor.LeaseID, out []RenewResult) ([]RenewResult, error) {
	base, start := len(out), time.Now()
	out, round, err := r.start(ctx, ids, out)
	if err != nil {
		return out, err
	}
	if err := round.wait(ctx); err != nil {
		r.metrics.renewalsUnconfirmed(len(out) - base)
		return out[:base], r.rs.err(err)
	}
	r.metrics.renewalsAcked(out[base:], start)
	return out, nil
}

// start renews ids in the lessor, appends their results to out, and returns
// the confirmation that must succeed before any of them is acknowledged.
func (r *renewer) start(ctx context.Context, ids []lessor.LeaseID, out []RenewResult) ([]RenewResult, *verifyRound, error) {
	if !r.leading() {
		return out, nil, r.rs.notLeader()
	}
	out, err := r.renewLocal(ctx, ids, out)
	if err != nil {
		return out, nil, err
	}
	return out, r.confirmation(), nil
}

// renewLocal renews ids in the lessor and appends their results to out. A
// lease that carries a checkpointed remainder (or has a checkpoint in flight)
// gets a replicated reset first (rule 3), so that its acknowledgement cannot
// be undercut by that remainder on a later leader; the resets of one call
// travel in one Checkpoint command, because after a Promote every lease has
// been checkpointed once and is reset on its next renewal.
func (r *renewer) renewLocal(ctx context.Context, ids []lessor.LeaseID, out []RenewResult) ([]RenewResult, error) {
	base := len(out)
	out = slices.Grow(out, len(ids)) // one allocation for a batch, not one per doubling
	for _, id := range ids {
		out = append(out, RenewResult{ID: id})
	}
	r.renewPermitted(ctx, out[base:])
	var resets []lessor.Checkpoint
	for _, res := range out[base:] {
		switch {
		case errors.Is(res.Err, lessor.ErrNotPrimary):
			return out[:base], r.rs.notLeader()
		case errors.Is(res.Err, lessor.ErrResetRequired):
			resets = append(resets, lessor.Checkpoint{ID: res.ID})
		}
	}
	for attempt := 0; len(resets) > 0 && attempt < 3; attempt++ {
		data, err := fsm.EncodeCheckpoint(resets)
		if err != nil {
			return out[:base], err
		}
		if _, err := r.proposer.propose(ctx, data); err != nil {
			return out[:base], err
		}
		resets = resets[:0]
		for i := base; i < len(out); i++ {
			res := &out[i]
			if !errors.Is(res.Err, lessor.ErrResetRequired) {
				continue
			}
			res.TTL, res.Err = r.lessor.Renew(res.ID)
			switch {
			case errors.Is(res.Err, lessor.ErrNotPrimary):
				return out[:base], r.rs.notLeader()
			case errors.Is(res.Err, lessor.ErrResetRequired):
				resets = append(resets, lessor.Checkpoint{ID: res.ID})
			}
		}
	}
	return out, nil
}

// renewPermitted renews each of rs in the lessor, except the leases that
// belong to another identity than the caller's (unless it is an admin or a
// member), which get ErrPermissionDenied and are not renewed.
func (r *renewer) renewPermitted(ctx context.Context, rs []RenewResult) {
	if !r.owners {
		r.lessor.RenewAll(rs) // plaintext: no lease has an owner
		return
	}
	c := callerOf(ctx)
	allowed := make([]RenewResult, 0, len(rs))
	at := make([]int, 0, len(rs))
	for i := range rs {
		if l := r.lessor.Lookup(rs[i].ID); l != nil && !c.mayAct(l.Owner()) {
			rs[i].Err = lessor.ErrPermissionDenied
			continue
		}
		allowed = append(allowed, rs[i])
		at = append(at, i)
	}
	r.lessor.RenewAll(allowed)
	for j, i := range at {
		rs[i] = allowed[j]
	}
}

// confirmation returns what confirms the renewals made before this call:
// raft's recent quorum contacts, at once, if they vouch for leadership less
// than RenewLease before now (see renewLease), or else a verifier round that
// starts after this call.
func (r *renewer) confirmation() *verifyRound {
	if r.faults.skipConfirmation() {
		return confirmedRound // the skip-verify variant: no confirmation at all
	}
	if r.lease.confirms(r.now()) {
		r.metrics.confirmedByLease.Inc()
		return confirmedRound
	}
	r.metrics.confirmedByRound.Inc()
	return r.verifier.join()
}
