package faults

import (
	"context"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
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
	BugTokenPerTerm     = "token-per-term"     // fencing tokens from a counter restarted at each Promote (fencing)
	BugResurrect        = "resurrect"          // an expired lease is granted again a little later (no-resurrection)
	BugOrphanItems      = "orphan-items"       // an expiry revoke leaves the lease's items behind (final-read)
	BugShedLoad         = "shed-load"          // a rate limiter refuses a share of the reads (availability)
)

// Bugs lists every variant LEASECLUSTER_CHAOS_BUG may name.
var Bugs = []string{
	BugSkipVerify, BugNoExtend, BugEarlyExpiry, BugLeaderOnlyRevoke, BugWallClock,
	BugImmortalLease, BugDuplicateID, BugTTLMisreport, BugStaleRead, BugDiverge, BugDoubleHolder, BugEarlyExpirySmall,
	BugTokenPerTerm, BugResurrect, BugOrphanItems, BugShedLoad,
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
	case BugTokenPerTerm:
		t := &termTokens{}
		f.DuringTerm = func(context.Context, server.Term) { t.restart() }
		f.FencingToken = t.next
	case BugResurrect:
		r := &resurrector{granted: map[lessor.LeaseID]bool{}}
		f.DuringTerm = r.run
	case BugOrphanItems:
		f.BeforeExpiryRevoke = orphanItems
		f.HeldInItemStore = true
	case BugShedLoad:
		f.ShedRead = func() bool { return rand.Float64() < shedShare }
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

// termTokens is the token-per-term variant: the leader numbers the attaches
// it answers from a counter it keeps in memory and restarts at each Promote,
// instead of returning the attach's log index (rule 7). Within a term the
// tokens grow; after a leader change they start again from 1, below those
// the last leader handed out, so a new holder gets a lower token than an
// earlier one. The item store keeps the right revision (Get shows it).
type termTokens struct{ n atomic.Uint64 }

func (t *termTokens) restart()           { t.n.Store(0) }
func (t *termTokens) next(uint64) uint64 { return t.n.Add(1) }

// resurrectAfter is how long after an expired lease is gone the resurrect
// variant grants it again: long enough for a client watching it to have seen
// it gone (the harness polls abandoned leases every 100 ms).
const resurrectAfter = 500 * time.Millisecond

// expiringWithin: a lease last seen with less than this left, and gone at
// the next look, was revoked by expiry (the variant polls every 20 ms).
const expiringWithin = 100 * time.Millisecond

// resurrector is the resurrect variant: a leader that re-proposes the grant
// of a lease it saw expire, once, resurrectAfter later, with the lease's ID,
// TTL and owner and without a request ID (as a grant retried by the leader
// after the dedupe window forgot it would be). The lease is back, alive for
// another TTL, after clients saw it gone (rule 3: an expired lease stays
// gone).
type resurrector struct {
	mu      sync.Mutex              // guards granted
	granted map[lessor.LeaseID]bool // leases granted again already: once each, in any term
	now     func() time.Time        // tests; nil: time.Now
	tick    <-chan time.Time        // tests; nil: every 20 ms
	passed  chan<- struct{}         // tests: told after each tick's pass; nil: nobody
}

type lastSeen struct {
	ttl      int64
	owner    string
	expiring bool
}

type regrant struct {
	id    lessor.LeaseID
	ttl   int64
	owner string
	at    time.Time
}

func (r *resurrector) run(ctx context.Context, term server.Term) {
	tick := r.tick
	if tick == nil {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	seen := map[lessor.LeaseID]lastSeen{}
	var due []regrant
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-tick:
		}
		alive := map[lessor.LeaseID]bool{}
		for _, l := range term.Leases() {
			alive[l.ID] = true
			seen[l.ID] = lastSeen{ttl: l.TTL(), owner: l.Owner(), expiring: l.Remaining() < expiringWithin}
		}
		r.mu.Lock()
		for id, s := range seen {
			if alive[id] {
				continue
			}
			delete(seen, id)
			if s.expiring && !r.granted[id] {
				r.granted[id] = true
				due = append(due, regrant{id: id, ttl: s.ttl, owner: s.owner, at: now.Add(resurrectAfter)})
			}
		}
		r.mu.Unlock()
		for len(due) > 0 && !now.Before(due[0].at) {
			_ = term.Grant(ctx, due[0].id, due[0].ttl, due[0].owner) // once: not retried
			due = due[1:]
		}
		if r.passed != nil {
			r.passed <- struct{}{}
		}
	}
}

// orphanItems is the orphan-items variant's apply of an expiry revoke, on
// every replica alike: it detaches the lease's items from the lessor
// before the revoke, as an expiry path that forgot the items would, so the
// revoke deletes the lease and leaves its items in the item store, held by
// a lease that is gone. The variant's leader refuses attaches of a key the
// item store shows held (Faults.HeldInItemStore), so such a key stays held
// for good: the lock is stuck, as a lock whose key outlived its lease is.
func orphanItems(le lessor.Lessor, id lessor.LeaseID) {
	l := le.Lookup(id)
	if l == nil {
		return
	}
	keys := l.Keys()
	items := make([]lessor.LeaseItem, len(keys))
	for i, k := range keys {
		items[i] = lessor.LeaseItem{Key: k}
	}
	if len(items) > 0 {
		_ = le.Detach(id, items)
	}
}

// shedShare is the share of reads (TimeToLive, Get, the lease listing) the
// shed-load variant refuses with RESOURCE_EXHAUSTED, as a rate limiter
// configured below the read load would. Clients do not retry that code, so
// each refusal is a failed read.
const shedShare = 0.2
