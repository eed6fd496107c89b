// Package faults is the chaos build's fault injection: it fills in a node's
// server.Faults from LEASECLUSTER_CHAOS_BUG and serves the /chaos/ controls
// (clock, fsync delay, leadership transfer) that the chaos harness drives.
// Only cmd/leasecluster imports it, and only in builds with the chaos tag,
// so the normal binary carries none of it.
package faults

import (
	"context"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/server"
)

// The deliberately broken variants selected by LEASECLUSTER_CHAOS_BUG. The
// harness's bite tests run each and require its checkers to catch it.
const (
	BugSkipVerify       = "skip-verify"        // renewals acknowledged without confirming leadership
	BugNoExtend         = "no-extend"          // Promote without the extension
	BugEarlyExpiry      = "early-expiry"       // leases revoked before they are due
	BugLeaderOnlyRevoke = "leader-only-revoke" // client revokes applied on the leader only
	BugWallClock        = "wall-clock"         // the lessor measures on the wall clock
)

// earlyExpiryFraction: the early-expiry variant revokes a lease once less
// than this fraction of its TTL remains, i.e. 15% (450 ms of a 3 s TTL)
// before it is due, far beyond the client's 2% safety margin.
const earlyExpiryFraction = 0.15

// node is one node's fault state: a node's faults are its own, so a process
// with several nodes (dev) keeps them apart.
type node struct {
	bug   string
	clock *Clock     // nil if the node was given a clock of its own
	store *slowStore // set once raft's log store is wrapped
	disk  *diskStore // under store: lose-unsynced and I/O errors (store.go)
}

// Install sets cfg's fault points: the bug named by LEASECLUSTER_CHAOS_BUG
// (none if unset), a controllable lessor clock unless cfg has one, a log
// store whose writes can be delayed, and the /chaos/ HTTP controls.
func Install(cfg *server.Config) {
	nd := &node{bug: os.Getenv("LEASECLUSTER_CHAOS_BUG")}
	f := &server.Faults{}
	switch nd.bug {
	case "":
	case BugSkipVerify:
		f.SkipConfirmation = true
	case BugNoExtend:
		f.Extend = time.Nanosecond // below the election timeout, after validation
	case BugEarlyExpiry:
		f.DuringTerm = func(ctx context.Context, term server.Term) {
			revokeEarly(ctx, term, func(lessor.LeaseID) float64 { return earlyExpiryFraction })
		}
	case BugLeaderOnlyRevoke:
		f.RevokeLocally = true
	case BugWallClock:
	default:
		if !install(nd.bug, cfg.Name, f) { // bugs.go
			logf(cfg, "unknown LEASECLUSTER_CHAOS_BUG; running unbroken", "bug", nd.bug)
			nd.bug = ""
		}
	}
	if nd.bug != "" {
		logf(cfg, "CHAOS BUILD: running a deliberately broken server", "bug", nd.bug)
	}
	if cfg.Clock == nil {
		nd.clock = NewClock(nd.bug == BugWallClock)
		cfg.Clock = nd.clock
	}
	if err := snapshotKnobs(cfg); err != nil { // store.go
		logf(cfg, "ignoring the chaos snapshot settings", "error", err)
	}
	f.LogStore = func(s raft.LogStore) raft.LogStore {
		nd.disk = newDiskStore(s)
		nd.store = &slowStore{LogStore: nd.disk}
		return nd.store
	}
	f.HTTP = nd.handler
	cfg.Faults = f
}

func logf(cfg *server.Config, msg string, args ...any) {
	if cfg.Logger != nil {
		cfg.Logger.Warn(msg, args...)
	}
}

// revokeEarly is the early-expiry variants: while the term lasts, the leader
// revokes every lease with less than early(id) of its TTL left, beside the
// lessor's own (correct) expiry.
func revokeEarly(ctx context.Context, term server.Term, early func(lessor.LeaseID) float64) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var ids []lessor.LeaseID
		for _, l := range term.Leases() {
			if l.Remaining() < time.Duration(float64(l.TTL())*early(l.ID)*float64(time.Millisecond)) {
				ids = append(ids, l.ID)
			}
		}
		if len(ids) > 0 {
			_ = term.RevokeExpired(ctx, ids) // offered again on the next tick
		}
	}
}
