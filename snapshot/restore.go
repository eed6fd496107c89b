package snapshot

import (
	"fmt"
	"time"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// ttlCeilingMs is lessor.TTLCeiling in milliseconds: the largest TTL,
// remainder and grace a snapshot may hold.
const ttlCeilingMs = int64(lessor.TTLCeiling / time.Millisecond)

// RestoreInfo is the restore record of a snapshot's header: how `snapshot
// restore` seeded a cluster from a backup. It is replicated state (the FSM
// keeps it, writes it into its later snapshots and hashes it), so nodes
// seeded from different files or with different graces disagree in their
// state hash even when the lease table alone would not show it.
type RestoreInfo struct {
	SourceIndex uint64 // the backup's header index
	SourceTerm  uint64 // the backup's header term
	SourceCRC   uint32 // the backup's CRC-32C trailer
	GraceMs     int64  // the grace added to every lease; 0 when GraceIsTTL
	GraceIsTTL  bool   // the grace was each lease's own TTL
}

// GraceString formats the grace for people: "ttl" or a duration.
func (r *RestoreInfo) GraceString() string {
	if r.GraceIsTTL {
		return "ttl (each lease's own)"
	}
	return (time.Duration(r.GraceMs) * time.Millisecond).String()
}

func (r *RestoreInfo) pb() *leasepb.SnapshotRestore {
	if r == nil {
		return nil
	}
	return &leasepb.SnapshotRestore{SourceIndex: r.SourceIndex, SourceTerm: r.SourceTerm, SourceCrc32C: r.SourceCRC, GraceMs: r.GraceMs, GraceIsTtl: r.GraceIsTTL}
}

func restoreInfo(p *leasepb.SnapshotRestore) *RestoreInfo {
	if p == nil {
		return nil
	}
	return &RestoreInfo{SourceIndex: p.SourceIndex, SourceTerm: p.SourceTerm, SourceCRC: p.SourceCrc32C, GraceMs: p.GraceMs, GraceIsTTL: p.GraceIsTtl}
}

// Grace is the grace period a restore adds to every lease.
type Grace struct {
	// TTL: each lease gets its own TTL as grace (the default of
	// --restore-grace). Otherwise D, rounded up to whole milliseconds.
	TTL bool
	D   time.Duration
}

// ParseGrace reads --restore-grace: "ttl" (or empty) for each lease's own TTL,
// else a duration >= 0.
func ParseGrace(s string) (Grace, error) {
	if s == "" || s == "ttl" {
		return Grace{TTL: true}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > lessor.TTLCeiling {
		return Grace{}, fmt.Errorf("restore grace %q: want \"ttl\" or a duration from 0 to %v", s, lessor.TTLCeiling)
	}
	return Grace{D: d}, nil
}

// ms is the grace of a lease with the given TTL, in milliseconds.
func (g Grace) ms(ttl int64) int64 {
	if g.TTL {
		return ttl
	}
	return int64((g.D + time.Millisecond - 1) / time.Millisecond)
}

// Restored returns the snapshot a new cluster is seeded with, from a backup
// s whose file summarises as from. It is a pure function of (s, from, g):
// every node that restores the same file with the same grace gets the same
// bytes, and so the same state (rules 1 and 8: nothing here reads a clock or
// a node's settings).
//
//   - Every lease gets a checkpointed remainder of its remaining TTL at save
//     time plus the grace, at most lessor.TTLCeiling. The remaining TTL at
//     save time is what the replicated state bounds it by: the checkpointed
//     remainder if the lease has one (a renewal after a checkpoint replicates
//     a reset first, so an unrenewed lease has no more than that left), else
//     its full TTL (a renewal gives at most that). A checkpointed lease's
//     expiry on the new cluster's first leader is its apply time (the node's
//     start) + remainder + --extend (rule 3), so no restored lease expires
//     before start + remaining + grace; its first renewal replicates a reset
//     and it is an ordinary lease again.
//   - The index is at least every item's and dedupe entry's revision (in a
//     snapshot raft took it always is already): the restored cluster's log
//     continues after it, so every new revision, the fencing token of an
//     attach, exceeds every restored one (rule 7).
//   - The term is kept (at least 1); the restore record names the source and
//     the grace.
func Restored(s *Snapshot, from Summary, g Grace) (*Snapshot, error) {
	if !g.TTL && (g.D < 0 || g.D > lessor.TTLCeiling) {
		return nil, fmt.Errorf("%w: restore grace %v out of range", ErrInvalid, g.D)
	}
	out := &Snapshot{
		Index: s.Index, Term: max(s.Term, 1),
		Leases: make([]lessor.LeaseState, len(s.Leases)),
		Items:  s.Items, Dedupe: s.Dedupe,
		Restore: &RestoreInfo{SourceIndex: s.Index, SourceTerm: s.Term, SourceCRC: from.Checksum, GraceIsTTL: g.TTL},
	}
	if !g.TTL {
		out.Restore.GraceMs = g.ms(0)
	}
	for i, l := range s.Leases {
		left := l.Remaining
		if left <= 0 {
			left = l.TTL
		}
		l.Remaining = min(left+g.ms(l.TTL), ttlCeilingMs)
		out.Leases[i] = l
	}
	for _, it := range s.Items {
		out.Index = max(out.Index, it.Revision)
	}
	for _, d := range s.Dedupe {
		out.Index = max(out.Index, d.Revision)
	}
	return out, nil
}

// MaxRevision returns the highest item or dedupe revision in s (0 if none):
// the restored cluster's next revision must exceed it.
func MaxRevision(s *Snapshot) uint64 {
	var m uint64
	for _, it := range s.Items {
		m = max(m, it.Revision)
	}
	for _, d := range s.Dedupe {
		m = max(m, d.Revision)
	}
	return m
}
