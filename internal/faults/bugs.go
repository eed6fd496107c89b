package faults

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/server"
)

// The broken variants of issue 23: one for each checker of the harness,
// each breaking what that checker (and as little else as possible) sees.
const (
	BugImmortalLease    = "immortal-lease"     // expired leases are never revoked (bounded-expiry)
	BugDuplicateID      = "duplicate-id"       // a new grant reuses an earlier grant's ID (unique-lease-ids)
	BugTTLMisreport     = "ttl-misreport"      // TimeToLive reports more than the granted TTL (ttl-sanity)
	BugStaleRead        = "stale-read"         // a follower answers reads from its own state (linearizable)
	BugDiverge          = "diverge"            // one replica applies client revokes differently (convergence)
	BugDoubleHolder     = "double-holder"      // an attach takes a key from its holder (no-overlapping-holders)
	BugEarlyExpirySmall = "early-expiry-small" // leases revoked 3-5% of their TTL early (no-early-expiry)
)

// Bugs lists every variant LEASECLUSTER_CHAOS_BUG may name.
var Bugs = []string{
	BugSkipVerify, BugNoExtend, BugEarlyExpiry, BugLeaderOnlyRevoke, BugWallClock,
	BugImmortalLease, BugDuplicateID, BugTTLMisreport, BugStaleRead, BugDiverge, BugDoubleHolder, BugEarlyExpirySmall,
}

// install sets the fault points of the variants in this file; it reports
// false for a name it does not know.
func install(bug, name string, f *server.Faults) bool {
	switch bug {
	case BugImmortalLease:
		f.SkipExpiry = true
	case BugDuplicateID:
		f.NewLeaseID = (&idReuser{age: reuseAfter}).id
	case BugTTLMisreport:
		f.ReportTTL = func(ms int64) int64 { return ms + ms/10 }
	case BugStaleRead:
		f.FollowerReads = true
	case BugDiverge:
		if name == divergingNode() {
			f.ApplyEntry = forgetRevokeRequests
		}
	case BugDoubleHolder:
		f.IgnoreHolder = true
	case BugEarlyExpirySmall:
		f.DuringTerm = func(ctx context.Context, term server.Term) { revokeEarly(ctx, term, smallEarlyFraction) }
	default:
		return false
	}
	return true
}

// reuseAfter: the duplicate-id variant hands out again an ID it drew at
// least this long ago. The harness's leases live a few seconds (a lock's up
// to about 15 s), so the old lease is usually gone and the FSM accepts the
// grant; when it is not, the grant fails with ALREADY_EXISTS.
const reuseAfter = 15 * time.Second

// idReuser is the duplicate-id variant: it remembers the IDs this leader
// drew and gives each one out once more, once it is reuseAfter old.
type idReuser struct {
	age  time.Duration
	mu   sync.Mutex // guards ids
	ids  []drawnID  // in drawing order
	now  func() time.Time
	used int // ids[:used] were given out again
}

type drawnID struct {
	id lessor.LeaseID
	at time.Time
}

func (r *idReuser) id(drawn lessor.LeaseID) lessor.LeaseID {
	now := time.Now()
	if r.now != nil {
		now = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used < len(r.ids) && now.Sub(r.ids[r.used].at) >= r.age {
		r.used++
		return r.ids[r.used-1].id
	}
	r.ids = append(r.ids, drawnID{drawn, now})
	return drawn
}

// smallEarlyFraction is the early-expiry-small variant's early share of a
// lease's TTL: between 3% and 5% (90-150 ms of a 3 s TTL), spread by lease
// ID, just beyond the client's margin of TTL/50 + 1 ms (61 ms).
func smallEarlyFraction(id lessor.LeaseID) float64 {
	return 0.03 + 0.02*float64(uint64(id)%1001)/1000
}

// divergingNode names the one replica of the diverge variant:
// LEASECLUSTER_CHAOS_DIVERGE_NODE, n1 by default (the harness's first node).
func divergingNode() string {
	if n := os.Getenv("LEASECLUSTER_CHAOS_DIVERGE_NODE"); n != "" {
		return n
	}
	return "n1"
}

// forgetRevokeRequests is the diverge variant's apply: on this replica a
// client revoke is applied without its request ID, so the revoke takes
// effect as everywhere else but the dedupe window, which is replicated state
// in the state hash (rule 1), does not remember it. Nothing a client reads
// differs; only the replicas' state hashes do.
func forgetRevokeRequests(l *raft.Log) *raft.Log {
	if l.Type != raft.LogCommand {
		return l
	}
	data, changed := forgetRevokeRequest(l.Data)
	if !changed {
		return l
	}
	c := *l
	c.Data = data
	return &c
}

// forgetRevokeRequest clears the request ID of a client revoke, or of those
// inside a batch. Data it cannot decode is left to the FSM.
func forgetRevokeRequest(data []byte) ([]byte, bool) {
	cmd := new(leasepb.Command)
	if proto.Unmarshal(data, cmd) != nil {
		return data, false
	}
	changed := false
	switch b := cmd.Body.(type) {
	case *leasepb.Command_Revoke:
		if b.Revoke.GetExpired() || cmd.RequestId == 0 {
			return data, false
		}
		cmd.RequestId, changed = 0, true
	case *leasepb.Command_Batch:
		for i, sub := range b.Batch.Commands {
			if d, ok := forgetRevokeRequest(sub); ok {
				b.Batch.Commands[i], changed = d, true
			}
		}
	}
	if !changed {
		return data, false
	}
	out, err := proto.Marshal(cmd)
	if err != nil {
		return data, false
	}
	return out, true
}
