package snapshot

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// Format constants.
const (
	// Magic opens every snapshot file.
	Magic = "LCSNAP\r\n"
	// Version is the format version that Write produces and Read accepts.
	Version uint32 = 1
	// MaxRecordSize bounds one record. The largest legitimate record is a
	// lease with many keys; a longer length is taken as corruption rather than
	// an invitation to allocate.
	MaxRecordSize = 64 << 20
)

// Errors. Read and Inspect wrap them with the position and details.
var (
	ErrBadMagic           = errors.New("snapshot: not a leasecluster snapshot (bad magic)")
	ErrUnsupportedVersion = errors.New("snapshot: unsupported format version")
	ErrTruncated          = errors.New("snapshot: truncated")
	ErrChecksum           = errors.New("snapshot: checksum mismatch")
	ErrCorrupt            = errors.New("snapshot: corrupt")
	ErrInvalid            = errors.New("snapshot: invalid contents")
)

// Snapshot is the replicated state of one FSM at one Raft index.
type Snapshot struct {
	Index  uint64 // index of the last log entry applied
	Term   uint64 // term of that entry
	Leases []lessor.LeaseState
	Items  []Item   // sorted by key
	Dedupe []Dedupe // oldest first
	// Restore is set in a snapshot written by Restore (and in the FSM's
	// snapshots of a cluster seeded from one): how the cluster was seeded.
	// Nil otherwise; a nil Restore writes the bytes of earlier builds.
	Restore *RestoreInfo
}

// Item is one entry of the item store.
type Item struct {
	Key      string
	LeaseID  lessor.LeaseID
	Value    string
	Revision uint64
}

// Dedupe is one remembered request ID with the result of the command that
// carried it. Kind says which command; the other fields are the result
// (LeaseID and TTL of a Grant; LeaseID, Key and Revision of an Attach).
type Dedupe struct {
	RequestID uint64
	Kind      leasepb.CommandKind
	LeaseID   lessor.LeaseID
	TTL       int64
	Key       string
	Revision  uint64
}

// Summary describes a snapshot without its contents.
type Summary struct {
	Version     uint32
	Index, Term uint64
	Leases      int
	Items       int
	Dedupe      int
	Checkpoints int    // leases that carry a checkpointed remainder
	ValueBytes  int64  // total size of item values
	Size        int64  // bytes in the file
	Checksum    uint32 // the CRC-32C trailer
	// Restore is the header's restore record, nil if the snapshot is not
	// (descended from) a restored one.
	Restore *RestoreInfo `json:",omitempty"`
}

// String formats the summary for people, one field per line.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "format version: %d\n", s.Version)
	fmt.Fprintf(&b, "index:          %d\n", s.Index)
	fmt.Fprintf(&b, "term:           %d\n", s.Term)
	fmt.Fprintf(&b, "leases:         %d (%d checkpointed)\n", s.Leases, s.Checkpoints)
	fmt.Fprintf(&b, "items:          %d (%d value bytes)\n", s.Items, s.ValueBytes)
	fmt.Fprintf(&b, "dedupe entries: %d\n", s.Dedupe)
	fmt.Fprintf(&b, "size:           %d bytes\n", s.Size)
	fmt.Fprintf(&b, "crc32c:         %08x\n", s.Checksum)
	if r := s.Restore; r != nil {
		fmt.Fprintf(&b, "restored from:  index %d, term %d, crc32c %08x, grace %s\n", r.SourceIndex, r.SourceTerm, r.SourceCRC, r.GraceString())
	}
	return b.String()
}

// checker validates records as they stream past, in the order the format
// requires, so that Write, Read and Inspect apply exactly the same rules.
type checker struct {
	hdr      *leasepb.SnapshotHeader
	stage    int                       // 0 header, 1 leases, 2 items, 3 dedupe
	lastID   lessor.LeaseID            // last lease ID seen
	lastKey  string                    // last item key seen
	haveKey  bool                      // lastKey is set
	holders  map[string]lessor.LeaseID // key -> lease, from the lease records
	requests map[uint64]struct{}       // request IDs seen
	n        [4]uint64                 // records seen per stage
}

const (
	stageHeader = iota
	stageLeases
	stageItems
	stageDedupe
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// stageOf returns the stage a record belongs to.
func stageOf(rec *leasepb.SnapshotRecord) (int, error) {
	switch rec.Record.(type) {
	case *leasepb.SnapshotRecord_Header:
		return stageHeader, nil
	case *leasepb.SnapshotRecord_Lease:
		return stageLeases, nil
	case *leasepb.SnapshotRecord_Item:
		return stageItems, nil
	case *leasepb.SnapshotRecord_Dedupe:
		return stageDedupe, nil
	}
	return 0, fmt.Errorf("%w: record of unknown type", ErrCorrupt)
}

func (c *checker) add(rec *leasepb.SnapshotRecord) error {
	st, err := stageOf(rec)
	if err != nil {
		return err
	}
	if c.hdr == nil && st != stageHeader {
		return invalidf("first record is not the header")
	}
	if c.hdr != nil && st == stageHeader {
		return invalidf("second header record")
	}
	if st < c.stage {
		return invalidf("record out of order")
	}
	c.stage = st
	c.n[st]++
	switch r := rec.Record.(type) {
	case *leasepb.SnapshotRecord_Header:
		if r.Header == nil {
			return invalidf("empty header")
		}
		if rs := r.Header.Restore; rs != nil && (rs.GraceMs < 0 || rs.GraceMs > ttlCeilingMs || (rs.GraceIsTtl && rs.GraceMs != 0)) {
			return invalidf("restore record with grace %d ms (per-lease TTL: %v)", rs.GraceMs, rs.GraceIsTtl)
		}
		c.hdr = r.Header
		c.holders = make(map[string]lessor.LeaseID)
		c.requests = make(map[uint64]struct{})
	case *leasepb.SnapshotRecord_Lease:
		return c.lease(r.Lease)
	case *leasepb.SnapshotRecord_Item:
		return c.item(r.Item)
	case *leasepb.SnapshotRecord_Dedupe:
		return c.dedupe(r.Dedupe)
	}
	return nil
}

func (c *checker) lease(l *leasepb.SnapshotLease) error {
	id := lessor.LeaseID(l.GetId())
	switch {
	case id <= lessor.NoLease:
		return invalidf("lease ID %d is not positive", id)
	case c.n[stageLeases] > 1 && id <= c.lastID:
		return invalidf("lease %d follows lease %d", id, c.lastID)
	case l.GetTtlMs() <= 0:
		return invalidf("lease %d has TTL %d ms", id, l.GetTtlMs())
	case l.GetRemainingMs() < 0:
		return invalidf("lease %d has remainder %d ms", id, l.GetRemainingMs())
	}
	c.lastID = id
	for i, k := range l.GetKeys() {
		if k == "" {
			return invalidf("lease %d holds an empty key", id)
		}
		if i > 0 && k <= l.Keys[i-1] {
			return invalidf("lease %d: keys not sorted", id)
		}
		if h, ok := c.holders[k]; ok {
			return invalidf("key %q held by leases %d and %d", k, h, id)
		}
		c.holders[k] = id
	}
	return nil
}

func (c *checker) item(it *leasepb.SnapshotItem) error {
	k := it.GetKey()
	if c.haveKey && k <= c.lastKey {
		return invalidf("item %q follows item %q", k, c.lastKey)
	}
	c.lastKey, c.haveKey = k, true
	h, ok := c.holders[k]
	if !ok || h != lessor.LeaseID(it.GetLeaseId()) {
		return invalidf("item %q names lease %d, which does not hold it", k, it.GetLeaseId())
	}
	if it.GetRevision() == 0 {
		return invalidf("item %q has revision 0", k)
	}
	return nil
}

func (c *checker) dedupe(d *leasepb.SnapshotDedupe) error {
	id := d.GetRequestId()
	if id == 0 {
		return invalidf("dedupe entry with request ID 0")
	}
	if _, dup := c.requests[id]; dup {
		return invalidf("request ID %d remembered twice", id)
	}
	c.requests[id] = struct{}{}
	if _, ok := leasepb.CommandKind_name[int32(d.GetKind())]; !ok || d.GetKind() == leasepb.CommandKind_COMMAND_KIND_UNSPECIFIED {
		return invalidf("request ID %d: unknown command kind %d", id, d.GetKind())
	}
	return nil
}

// finish checks the counts once every record has been seen.
func (c *checker) finish() error {
	if c.hdr == nil {
		return invalidf("no header record")
	}
	want := [4]uint64{1, c.hdr.LeaseCount, c.hdr.ItemCount, c.hdr.DedupeCount}
	names := [4]string{"headers", "leases", "items", "dedupe entries"}
	for i := range want {
		if c.n[i] != want[i] {
			return invalidf("%d %s, header says %d", c.n[i], names[i], want[i])
		}
	}
	if uint64(len(c.holders)) != c.n[stageItems] {
		return invalidf("leases hold %d keys but there are %d items", len(c.holders), c.n[stageItems])
	}
	return nil
}

// records converts s into the records Write emits, in file order.
func records(s *Snapshot, emit func(*leasepb.SnapshotRecord) error) error {
	hdr := &leasepb.SnapshotHeader{
		Index:       s.Index,
		Term:        s.Term,
		LeaseCount:  uint64(len(s.Leases)),
		ItemCount:   uint64(len(s.Items)),
		DedupeCount: uint64(len(s.Dedupe)),
		Restore:     s.Restore.pb(),
	}
	if err := emit(&leasepb.SnapshotRecord{Record: &leasepb.SnapshotRecord_Header{Header: hdr}}); err != nil {
		return err
	}
	for _, l := range s.Leases {
		r := &leasepb.SnapshotLease{Id: int64(l.ID), TtlMs: l.TTL, RemainingMs: l.Remaining, Gen: l.Gen, Keys: l.Keys, Owner: l.Owner}
		if err := emit(&leasepb.SnapshotRecord{Record: &leasepb.SnapshotRecord_Lease{Lease: r}}); err != nil {
			return err
		}
	}
	for _, it := range s.Items {
		r := &leasepb.SnapshotItem{Key: it.Key, LeaseId: int64(it.LeaseID), Value: it.Value, Revision: it.Revision}
		if err := emit(&leasepb.SnapshotRecord{Record: &leasepb.SnapshotRecord_Item{Item: r}}); err != nil {
			return err
		}
	}
	for _, d := range s.Dedupe {
		r := &leasepb.SnapshotDedupe{RequestId: d.RequestID, Kind: d.Kind, LeaseId: int64(d.LeaseID), TtlMs: d.TTL, Key: d.Key, Revision: d.Revision}
		if err := emit(&leasepb.SnapshotRecord{Record: &leasepb.SnapshotRecord_Dedupe{Dedupe: r}}); err != nil {
			return err
		}
	}
	return nil
}

// collector rebuilds a Snapshot from validated records.
type collector struct{ s Snapshot }

func (c *collector) add(rec *leasepb.SnapshotRecord) {
	switch r := rec.Record.(type) {
	case *leasepb.SnapshotRecord_Header:
		c.s.Index, c.s.Term = r.Header.Index, r.Header.Term
		c.s.Restore = restoreInfo(r.Header.Restore)
		// Counts are untrusted until the checksum verifies, so cap the
		// preallocation: a corrupt count must not allocate gigabytes.
		const capHint = 1 << 16
		c.s.Leases = make([]lessor.LeaseState, 0, min(r.Header.LeaseCount, capHint))
		c.s.Items = make([]Item, 0, min(r.Header.ItemCount, capHint))
		c.s.Dedupe = make([]Dedupe, 0, min(r.Header.DedupeCount, capHint))
	case *leasepb.SnapshotRecord_Lease:
		l := r.Lease
		c.s.Leases = append(c.s.Leases, lessor.LeaseState{
			ID: lessor.LeaseID(l.Id), TTL: l.TtlMs, Remaining: l.RemainingMs, Gen: l.Gen, Keys: slices.Clip(l.Keys), Owner: l.Owner,
		})
	case *leasepb.SnapshotRecord_Item:
		it := r.Item
		c.s.Items = append(c.s.Items, Item{Key: it.Key, LeaseID: lessor.LeaseID(it.LeaseId), Value: it.Value, Revision: it.Revision})
	case *leasepb.SnapshotRecord_Dedupe:
		d := r.Dedupe
		c.s.Dedupe = append(c.s.Dedupe, Dedupe{
			RequestID: d.RequestId, Kind: d.Kind, LeaseID: lessor.LeaseID(d.LeaseId), TTL: d.TtlMs, Key: d.Key, Revision: d.Revision,
		})
	}
}
