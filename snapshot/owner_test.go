package snapshot

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// A lease's owner is written and read back (sample() holds owned leases;
// TestRoundTrip compares everything). Leases without an owner are written
// exactly as before owners existed, so a snapshot of an older build reads
// with owner "" and writes back the same bytes.
func TestOwnerFormat(t *testing.T) {
	s := &Snapshot{Index: 1, Term: 1, Leases: []lessor.LeaseState{{ID: 1, TTL: 1000, Keys: []string{"k"}}, {ID: 2, TTL: 1000}},
		Items: []Item{{Key: "k", LeaseID: 1, Revision: 1}}, Dedupe: []Dedupe{}}
	old := forge(t, hdr(2, 1, 0), lease(1, "k"), lease(2), item("k", 1)) // no owner field at all
	if !bytes.Equal(encode(t, s), old) {
		t.Fatal("a snapshot without owners is not the pre-owner encoding")
	}
	got, err := Read(bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range got.Leases {
		if l.Owner != "" {
			t.Fatalf("lease %d of an old snapshot has owner %q", l.ID, l.Owner)
		}
	}

	s.Leases[1].Owner = "app1"
	got, err = Read(bytes.NewReader(encode(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Leases[0].Owner != "" || got.Leases[1].Owner != "app1" {
		t.Fatalf("owners read back: %q, %q", got.Leases[0].Owner, got.Leases[1].Owner)
	}
	if bytes.Equal(encode(t, s), old) {
		t.Fatal("the owner changed nothing in the file")
	}
}

// A field this build does not know, inside a lease or any other record, is
// corruption: dropping it would restore a different state than was written
// (an older build would otherwise have dropped owners silently).
func TestUnknownFieldInRecord(t *testing.T) {
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)
	h, l := hdr(1, 0, 0), lease(1)
	h.GetHeader().ProtoReflect().SetUnknown(unknown)
	l.GetLease().ProtoReflect().SetUnknown(unknown)
	for name, recs := range map[string][]*leasepb.SnapshotRecord{
		"header": {h, lease(1)},
		"lease":  {hdr(1, 0, 0), l},
	} {
		data := forge(t, recs...)
		if _, err := Read(bytes.NewReader(data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s with an unknown field: %v, want ErrCorrupt", name, err)
		}
		if _, err := Inspect(bytes.NewReader(data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Inspect of a %s with an unknown field: %v, want ErrCorrupt", name, err)
		}
	}
}
