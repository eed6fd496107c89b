package fsm

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/snapshot"
)

// A state seeded from a restored snapshot keeps the restore record: in its
// later snapshots and in its hash, so replicas seeded with different graces
// (or from different files) never hash alike, even with no lease to show it.
// A state never restored hashes as before.
func TestRestoreRecordIsReplicatedState(t *testing.T) {
	m := must(t)
	src := newNode(t, 0)
	src.ok(m(EncodeGrant(0, 1, 5000, "")))
	plain, plainIdx := src.f.StateHashAt()
	if plain != src.f.StateHash() || plainIdx != src.idx {
		t.Fatalf("StateHashAt = %s at %d; StateHash %s, applied %d", plain, plainIdx, src.f.StateHash(), src.idx)
	}
	backup, err := snapshot.Read(bytes.NewReader(src.snapshotBytes()))
	if err != nil {
		t.Fatal(err)
	}
	restoreWith := func(g snapshot.Grace, crc uint32) *node {
		r, err := snapshot.Restored(backup, snapshot.Summary{Checksum: crc}, g)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := snapshot.Write(&buf, r); err != nil {
			t.Fatal(err)
		}
		n := newNode(t, 0)
		if err := n.f.Restore(io.NopCloser(&buf)); err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := restoreWith(snapshot.Grace{D: time.Second}, 7)
	b := restoreWith(snapshot.Grace{D: time.Second}, 7)
	ha, ia := a.f.StateHashAt()
	if hb, ib := b.f.StateHashAt(); ha != hb || ia != ib || ia != backup.Index {
		t.Fatalf("same restore, different state: %s at %d, %s at %d (backup index %d)", ha, ia, hb, ib, backup.Index)
	}
	for name, n := range map[string]*node{
		"another grace": restoreWith(snapshot.Grace{D: 2 * time.Second}, 7),
		"ttl grace":     restoreWith(snapshot.Grace{TTL: true}, 7),
		"another file":  restoreWith(snapshot.Grace{D: time.Second}, 8),
	} {
		if n.f.StateHash() == ha {
			t.Errorf("%s: hashes like the first restore", name)
		}
	}
	if ha == plain {
		t.Error("a restored state hashes like the original")
	}
	// Carried into the restored replica's own snapshots, and from there on.
	again, err := snapshot.Read(bytes.NewReader(a.snapshotBytes()))
	if err != nil || again.Restore == nil || *again.Restore != (snapshot.RestoreInfo{SourceIndex: backup.Index, SourceTerm: backup.Term, SourceCRC: 7, GraceMs: 1000}) {
		t.Fatalf("the restored replica's snapshot has restore record %+v, %v", again.Restore, err)
	}
	c := newNode(t, 0)
	if err := c.f.Restore(io.NopCloser(bytes.NewReader(a.snapshotBytes()))); err != nil {
		t.Fatal(err)
	}
	if c.f.StateHash() != ha {
		t.Fatal("a replica installed from the restored one's snapshot hashes differently")
	}
	// Restoring a never-restored snapshot clears the record.
	if err := c.f.Restore(io.NopCloser(bytes.NewReader(src.snapshotBytes()))); err != nil {
		t.Fatal(err)
	}
	if c.f.StateHash() != plain {
		t.Fatal("the record survived a restore of a snapshot without one")
	}
}
