package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/limits"
	"github.com/leasecluster/leasecluster/snapshot"
)

// Snapshot captures the replicated state at once and returns a
// raft.FSMSnapshot that streams it in the snapshot package's format. raft
// calls it on the FSM goroutine, so no entry applies until it returns: it
// only copies (a million leases take a fraction of a second), and Persist,
// which raft runs on another goroutine, puts the copy in order.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.stateMu.RLock()
	defer f.stateMu.RUnlock()
	s := &snapshot.Snapshot{
		Index:   f.applied.Load(),
		Term:    f.lastTerm,
		Leases:  f.lessor.CopyState(),
		Items:   f.copyItems(),
		Dedupe:  f.dedupe.entries(),
		Restore: f.restore,
	}
	return &fsmSnapshot{s: s}, nil
}

// copyItems copies the item store in no particular order. Values are
// strings, so the copy shares their bytes.
func (f *FSM) copyItems() []snapshot.Item {
	f.itemsMu.RLock()
	defer f.itemsMu.RUnlock()
	items := make([]snapshot.Item, 0, len(f.items))
	for k, it := range f.items {
		items = append(items, snapshot.Item{Key: k, LeaseID: it.leaseID, Value: it.value, Revision: it.revision})
	}
	return items
}

// sortCopies orders copied leases by ID and items by key: the canonical
// order of snapshots and of the state hash.
func sortCopies(leases []lessor.LeaseState, items []snapshot.Item) {
	lessor.SortState(leases)
	slices.SortFunc(items, func(a, b snapshot.Item) int { return strings.Compare(a.Key, b.Key) })
}

type fsmSnapshot struct{ s *snapshot.Snapshot }

// Meta returns the index and term the snapshot was taken at (a backup sends
// them before the bytes).
func (fs *fsmSnapshot) Meta() (index, term uint64) { return fs.s.Index, fs.s.Term }

// Persist writes the captured state to sink; raft calls it off the FSM
// goroutine, so applies continue meanwhile.
func (fs *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	sortCopies(fs.s.Leases, fs.s.Items)
	if err := snapshot.Write(sink, fs.s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return nil
}

func (*fsmSnapshot) Release() {}

// Restore replaces the state with a snapshot. It reads and validates the
// whole snapshot first; a truncated, corrupt or inconsistent one fails with
// an error and leaves the running state as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := snapshot.Read(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	for _, l := range s.Leases {
		// Snapshot validation knows nothing of identity limits either; an
		// owner no grant could have logged is not ours.
		if err := limits.CheckIdentity(l.Owner); err != nil {
			return fmt.Errorf("fsm: restore: lease %d owner: %w", l.ID, err)
		}
	}
	for _, it := range s.Items {
		// Snapshot validation knows nothing of item limits; a snapshot
		// holding what no command could have created is not ours.
		if err := limits.CheckKey(it.Key); err != nil {
			return fmt.Errorf("fsm: restore: item %q: %w", it.Key, err)
		}
		if err := limits.CheckValue(it.Value); err != nil {
			return fmt.Errorf("fsm: restore: item %q: %w", it.Key, err)
		}
	}
	items := make(map[string]itemState, len(s.Items))
	for _, it := range s.Items {
		items[it.Key] = itemState{leaseID: it.LeaseID, value: it.Value, revision: it.Revision}
	}
	f.stateMu.Lock()
	defer f.stateMu.Unlock()
	// Recover validates everything before changing anything, and what
	// follows cannot fail, so a failure here also leaves the state intact.
	if err := f.lessor.Recover(s.Leases, f.rangeDeleter); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.itemsMu.Lock()
	f.items = items
	f.itemsMu.Unlock()
	f.dedupe.reset(s.Dedupe)
	f.restore = s.Restore
	f.lastTerm = s.Term
	f.applied.Store(s.Index)
	f.logger.Info("restored snapshot", "index", s.Index, "term", s.Term,
		"leases", len(s.Leases), "items", len(s.Items), "dedupe", len(s.Dedupe))
	return nil
}

// StateHash returns the hex SHA-256 of the replicated state: every lease's
// replicated fields (lessor.State, owner included), the item store and the dedupe window.
// Replicas that applied the same entries return the same hash. Local timing
// (when a checkpoint was applied, primary schedules) and the applied index
// are not part of it.
func (f *FSM) StateHash() string {
	h, _ := f.StateHashAt()
	return h
}

// StateHashAt is StateHash with the index of the last entry applied to the
// hashed state, taken in the same cut: replicas whose indexes are equal must
// have equal hashes. A state restored from a snapshot.Restored snapshot also
// hashes its restore record (a state without one hashes as before).
func (f *FSM) StateHashAt() (hash string, index uint64) {
	// Copy under the lock (one consistent cut), hash outside it, so that a
	// large table does not stall Apply for the length of a SHA-256 pass.
	f.stateMu.RLock()
	leases := f.lessor.CopyState()
	items := f.copyItems()
	dd := f.dedupe.entries()
	rs := f.restore
	index = f.applied.Load()
	f.stateMu.RUnlock()
	sortCopies(leases, items)
	h := hasher{h: sha256.New()}
	h.str("leasecluster fsm state v2") // v2: leases' owners
	h.u64(uint64(len(leases)))
	for _, l := range leases {
		h.u64(uint64(l.ID))
		h.u64(uint64(l.TTL))
		h.u64(uint64(l.Remaining))
		h.u64(l.Gen)
		h.u64(uint64(len(l.Keys)))
		for _, k := range l.Keys {
			h.str(k)
		}
		h.str(l.Owner)
	}
	h.u64(uint64(len(items)))
	for _, it := range items {
		h.str(it.Key)
		h.u64(uint64(it.LeaseID))
		h.str(it.Value)
		h.u64(it.Revision)
	}
	h.u64(uint64(len(dd)))
	for _, d := range dd {
		h.u64(d.RequestID)
		h.u64(uint64(d.Kind))
		h.u64(uint64(d.LeaseID))
		h.u64(uint64(d.TTL))
		h.str(d.Key)
		h.u64(d.Revision)
	}
	if rs != nil {
		h.str("restored")
		h.u64(rs.SourceIndex)
		h.u64(rs.SourceTerm)
		h.u64(uint64(rs.SourceCRC))
		h.u64(uint64(rs.GraceMs))
		h.u64(map[bool]uint64{false: 0, true: 1}[rs.GraceIsTTL])
	}
	return hex.EncodeToString(h.h.Sum(nil)), index
}

// hasher writes an unambiguous encoding: fixed-width integers and
// length-prefixed strings.
type hasher struct {
	h   hash.Hash
	buf [8]byte
}

func (h *hasher) u64(v uint64) {
	binary.BigEndian.PutUint64(h.buf[:], v)
	h.h.Write(h.buf[:])
}

func (h *hasher) str(s string) {
	h.u64(uint64(len(s)))
	io.WriteString(h.h, s)
}
