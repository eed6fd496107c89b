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
	// ends (the early-expiry variant revokes leases before they are due).
	DuringTerm func(ctx context.Context, term Term)
}

// Term is what a DuringTerm fault may do while the node leads.
type Term interface {
	// Leases lists the lessor's leases.
	Leases() []*lessor.Lease
	// RevokeExpired proposes an expiry revoke of ids, as the expiry loop does.
	RevokeExpired(ctx context.Context, ids []lessor.LeaseID) error
}

func (f *Faults) skipConfirmation() bool { return f != nil && f.SkipConfirmation }
func (f *Faults) revokeLocally() bool    { return f != nil && f.RevokeLocally }
