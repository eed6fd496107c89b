package server

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/lessor"
)

// Faults are a node's fault-injection points, in the manner of CockroachDB's
// testing knobs: Config.Faults is nil by default, and then every hot path
// pays one nil test and injects nothing. The chaos build of the binary fills
// them in (internal/faults, from LEASECLUSTER_CHAOS_BUG and the /chaos/
// controls); no flag of a normal build reaches them.
//
// The broken variants exist so that the chaos harness's bite tests can prove
// that its checkers catch real bugs; each names the rule it breaks.
type Faults struct {
	// LogStore wraps raft's log store (the slow-fsync nemesis).
	LogStore func(raft.LogStore) raft.LogStore
	// HTTP wraps the node's HTTP handler, to serve controls beside the
	// public API. It must pass every other request to h untouched.
	HTTP func(h http.Handler, n *Node) http.Handler

	// SkipConfirmation acknowledges renewals without confirming leadership
	// (breaks rule 2).
	SkipConfirmation bool
	// RevokeLocally applies client revokes to the leader's own lessor and
	// never replicates them (breaks the replication of revokes).
	RevokeLocally bool
	// Extend, when positive, replaces the extension after the configuration
	// was validated, below the election timeout that rule 2 needs.
	Extend time.Duration
	// DuringTerm runs beside each leadership term, from Promote until ctx
	// ends (the early-expiry variants revoke leases before they are due).
	DuringTerm func(ctx context.Context, term Term)

	// SkipExpiry drops the batches of expired leases instead of proposing
	// their revokes: nothing expires (breaks rule 3, bounded expiry).
	SkipExpiry bool
	// NewLeaseID replaces the ID the leader drew for a grant that named none
	// (the duplicate-id variant hands out an ID it gave before: breaks
	// unique lease IDs).
	NewLeaseID func(drawn lessor.LeaseID) lessor.LeaseID
	// IgnoreHolder makes the leader detach a key from the lease holding it
	// before it proposes another lease's attach of the key, so the attach
	// never meets the holder (breaks exclusive holders, rule 7).
	IgnoreHolder bool
	// ReportTTL replaces the granted TTL (ms) that TimeToLive reports
	// (the ttl-misreport variant reports more: breaks rule 4's contract).
	ReportTTL func(grantedMs int64) int64
	// FollowerReads lets a follower answer linearizable reads from its own
	// state, without the leader (breaks linearizable reads).
	FollowerReads bool
	// ApplyEntry may replace a committed entry before this replica's FSM
	// applies it; it must not modify l, which raft may still hold (the
	// diverge variant: one replica applies revokes differently, rule 1).
	ApplyEntry func(l *raft.Log) *raft.Log
	// FencingToken replaces the fencing token (the item's revision) that an
	// attach returns to its client (the token-per-term variant returns a
	// counter the leader restarts at each Promote: breaks rule 7's tokens).
	FencingToken func(rev uint64) uint64
	// BeforeExpiryRevoke is the FSM's fsm.Config.BeforeExpiryRevoke, called
	// on every replica with each lease an expiry revoke is about to delete
	// (the orphan-items variant detaches the lease's items from the lessor
	// first, so the revoke leaves them in the item store: breaks rule 3).
	BeforeExpiryRevoke func(le lessor.Lessor, id lessor.LeaseID)
	// HeldInItemStore makes the leader refuse an attach of a key that the
	// item store shows held by another lease, before it proposes (with
	// BeforeExpiryRevoke, the orphan-items variant: a key left behind by an
	// expired lease stays held for good).
	HeldInItemStore bool
	// ShedRead refuses a read with RESOURCE_EXHAUSTED when it returns true
	// (the shed-load variant: a rate limiter set below the read load; breaks
	// availability).
	ShedRead func() bool
}

// Term is what a DuringTerm fault may do while the node leads.
type Term interface {
	// Leases lists the lessor's leases.
	Leases() []*lessor.Lease
	// RevokeExpired proposes an expiry revoke of ids, as the expiry loop does.
	RevokeExpired(ctx context.Context, ids []lessor.LeaseID) error
	// Grant proposes a grant of lease id without a request ID, as a client
	// grant naming its ID would be proposed.
	Grant(ctx context.Context, id lessor.LeaseID, ttlMs int64, owner string) error
}

func (f *Faults) skipConfirmation() bool { return f != nil && f.SkipConfirmation }
func (f *Faults) revokeLocally() bool    { return f != nil && f.RevokeLocally }
func (f *Faults) skipExpiry() bool       { return f != nil && f.SkipExpiry }
func (f *Faults) ignoreHolder() bool     { return f != nil && f.IgnoreHolder }
func (f *Faults) followerReads() bool    { return f != nil && f.FollowerReads }
func (f *Faults) shedRead() bool         { return f != nil && f.ShedRead != nil && f.ShedRead() }
func (f *Faults) heldInItemStore() bool  { return f != nil && f.HeldInItemStore }

// fencingToken is the token an attach of revision rev returns: rev, but in
// the token-per-term variant.
func (f *Faults) fencingToken(rev uint64) uint64 {
	if f == nil || f.FencingToken == nil {
		return rev
	}
	return f.FencingToken(rev)
}

func (f *Faults) beforeExpiryRevoke() func(lessor.Lessor, lessor.LeaseID) {
	if f == nil {
		return nil
	}
	return f.BeforeExpiryRevoke
}
