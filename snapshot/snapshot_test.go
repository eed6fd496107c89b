package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

func sample() *Snapshot {
	return &Snapshot{
		Index: 42,
		Term:  3,
		Leases: []lessor.LeaseState{
			{ID: 1, TTL: 1500, Keys: []string{"a", "b/c"}},
			{ID: 7, TTL: 60000, Remaining: 1234, Gen: 2, Owner: "app1"},
			{ID: 9, TTL: 5000, Gen: 1, Keys: []string{"z"}, Owner: "ключ CN"},
		},
		Items: []Item{
			{Key: "a", LeaseID: 1, Value: "va", Revision: 10},
			{Key: "b/c", LeaseID: 1, Value: "", Revision: 12},
			{Key: "z", LeaseID: 9, Value: "vz", Revision: 40},
		},
		Dedupe: []Dedupe{
			{RequestID: 100, Kind: leasepb.CommandKind_COMMAND_KIND_GRANT, LeaseID: 1, TTL: 1500},
			{RequestID: 5, Kind: leasepb.CommandKind_COMMAND_KIND_ATTACH, LeaseID: 1, Key: "a", Revision: 10},
			{RequestID: 77, Kind: leasepb.CommandKind_COMMAND_KIND_REVOKE},
		},
	}
}

func encode(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for name, s := range map[string]*Snapshot{
		"sample": sample(),
		"empty":  {Index: 1, Term: 1, Leases: []lessor.LeaseState{}, Items: []Item{}, Dedupe: []Dedupe{}},
	} {
		t.Run(name, func(t *testing.T) {
			data := encode(t, s)
			got, err := Read(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, s) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, s)
			}
			// The same state writes the same bytes.
			if again := encode(t, got); !bytes.Equal(again, data) {
				t.Fatal("re-encoding a read snapshot gives different bytes")
			}
		})
	}
}

func TestLayout(t *testing.T) {
	data := encode(t, sample())
	if !strings.HasPrefix(string(data), Magic) {
		t.Fatalf("file does not start with the magic: %q", data[:8])
	}
	if v := binary.BigEndian.Uint32(data[len(Magic):]); v != Version {
		t.Fatalf("version field %d, want %d", v, Version)
	}
	body, trailer := data[:len(data)-4], data[len(data)-4:]
	if body[len(body)-1] != 0 {
		t.Fatal("records are not closed by a zero length")
	}
	if got, want := binary.BigEndian.Uint32(trailer), crc32.Checksum(body, castagnoli); got != want {
		t.Fatalf("trailer %08x, want CRC-32C %08x", got, want)
	}
}

func TestTruncationAtEveryOffset(t *testing.T) {
	data := encode(t, sample())
	for n := 0; n < len(data); n++ {
		if _, err := Read(bytes.NewReader(data[:n])); err == nil {
			t.Fatalf("Read accepted the first %d of %d bytes", n, len(data))
		}
		if _, err := Inspect(bytes.NewReader(data[:n])); err == nil {
			t.Fatalf("Inspect accepted the first %d of %d bytes", n, len(data))
		}
	}
	// Truncation inside a record reports ErrTruncated specifically.
	if _, err := Read(bytes.NewReader(data[:len(data)/2])); !errors.Is(err, ErrTruncated) {
		t.Fatalf("half a snapshot: %v, want ErrTruncated", err)
	}
}

func TestBitFlips(t *testing.T) {
	data := encode(t, sample())
	for i := range data {
		for bit := range 8 {
			bad := bytes.Clone(data)
			bad[i] ^= 1 << bit
			if _, err := Read(bytes.NewReader(bad)); err == nil {
				t.Fatalf("flip of bit %d of byte %d went undetected", bit, i)
			}
		}
	}
	// A flip in the payload of the last item's value (a place where the
	// structure stays valid) is caught by the checksum.
	i := bytes.LastIndex(data, []byte("vz"))
	bad := bytes.Clone(data)
	bad[i] ^= 1
	if _, err := Read(bytes.NewReader(bad)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("flipped value byte: %v, want ErrChecksum", err)
	}
}

func TestRejects(t *testing.T) {
	good := encode(t, sample())
	if _, err := Read(bytes.NewReader(append(bytes.Clone(good), 0))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v, want ErrCorrupt", err)
	}
	bad := bytes.Clone(good)
	copy(bad, "NOTSNAP!")
	if _, err := Read(bytes.NewReader(bad)); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	bad = bytes.Clone(good)
	binary.BigEndian.PutUint32(bad[len(Magic):], 2)
	if _, err := Read(bytes.NewReader(bad)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("version 2: %v", err)
	}
	// A huge record length must fail fast, without allocating it.
	huge := append([]byte(Magic), 0, 0, 0, 1)
	huge = binary.AppendUvarint(huge, 1<<40)
	if _, err := Read(bytes.NewReader(huge)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge length: %v, want ErrCorrupt", err)
	}
	// A length within the limit on a short stream is a truncation.
	short := append([]byte(Magic), 0, 0, 0, 1)
	short = binary.AppendUvarint(short, MaxRecordSize)
	if _, err := Read(bytes.NewReader(short)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short record: %v, want ErrTruncated", err)
	}
}

// forge writes records with a correct checksum, to test the checks that
// the checksum cannot make: order, counts and consistency.
func forge(t *testing.T, recs ...*leasepb.SnapshotRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(Magic)
	buf.Write([]byte{0, 0, 0, 1})
	for _, r := range recs {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(binary.AppendUvarint(nil, uint64(len(b))))
		buf.Write(b)
	}
	buf.WriteByte(0)
	return binary.BigEndian.AppendUint32(buf.Bytes(), crc32.Checksum(buf.Bytes(), castagnoli))
}

func hdr(leases, items, dedupe uint64) *leasepb.SnapshotRecord {
	return &leasepb.SnapshotRecord{Record: &leasepb.SnapshotRecord_Header{Header: &leasepb.SnapshotHeader{
		Index: 1, Term: 1, LeaseCount: leases, ItemCount: items, DedupeCount: dedupe}}}
}

func lease(id int64, keys ...string) *leasepb.SnapshotRecord {
	return &leasepb.SnapshotRecord{Record: &leasepb.SnapshotRecord_Lease{Lease: &leasepb.SnapshotLease{Id: id, TtlMs: 1000, Keys: keys}}}
}

func item(key string, lease int64) *leasepb.SnapshotRecord {
	return &leasepb.SnapshotRecord{Record: &leasepb.SnapshotRecord_Item{Item: &leasepb.SnapshotItem{Key: key, LeaseId: lease, Revision: 1}}}
}

func TestConsistencyChecks(t *testing.T) {
	if _, err := Read(bytes.NewReader(forge(t, hdr(1, 1, 0), lease(1, "k"), item("k", 1)))); err != nil {
		t.Fatalf("a well-formed forged snapshot is refused: %v", err)
	}
	for name, recs := range map[string][]*leasepb.SnapshotRecord{
		"no header":           {lease(1)},
		"two headers":         {hdr(0, 0, 0), hdr(0, 0, 0)},
		"lease count":         {hdr(2, 0, 0), lease(1)},
		"item before lease":   {hdr(1, 1, 0), item("k", 1), lease(1, "k")},
		"leases unsorted":     {hdr(2, 0, 0), lease(2), lease(1)},
		"duplicate lease":     {hdr(2, 0, 0), lease(1), lease(1)},
		"item of other lease": {hdr(2, 1, 0), lease(1, "k"), lease(2), item("k", 2)},
		"key held twice":      {hdr(2, 1, 0), lease(1, "k"), lease(2, "k"), item("k", 1)},
		"key without item":    {hdr(1, 0, 0), lease(1, "k")},
		"zero lease ID":       {hdr(1, 0, 0), lease(0)},
		"dedupe id 0": {hdr(0, 0, 1), {Record: &leasepb.SnapshotRecord_Dedupe{Dedupe: &leasepb.SnapshotDedupe{
			Kind: leasepb.CommandKind_COMMAND_KIND_GRANT}}}},
		"dedupe unknown kind": {hdr(0, 0, 1), {Record: &leasepb.SnapshotRecord_Dedupe{Dedupe: &leasepb.SnapshotDedupe{
			RequestId: 1, Kind: 99}}}},
	} {
		if _, err := Read(bytes.NewReader(forge(t, recs...))); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	s := sample()
	s.Leases[0], s.Leases[1] = s.Leases[1], s.Leases[0]
	if err := Write(io.Discard, s); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unsorted leases: %v, want ErrInvalid", err)
	}
	s = sample()
	s.Items = s.Items[1:]
	if err := Write(io.Discard, s); !errors.Is(err, ErrInvalid) {
		t.Fatalf("missing item: %v, want ErrInvalid", err)
	}
}

func TestInspect(t *testing.T) {
	data := encode(t, sample())
	sum, err := Inspect(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{
		Version: 1, Index: 42, Term: 3, Leases: 3, Items: 3, Dedupe: 3, Checkpoints: 1,
		ValueBytes: 4, Size: int64(len(data)), Checksum: binary.BigEndian.Uint32(data[len(data)-4:]),
	}
	if sum != want {
		t.Fatalf("Inspect = %+v, want %+v", sum, want)
	}
	out := sum.String()
	for _, s := range []string{"index:          42", "leases:         3 (1 checkpointed)", "dedupe entries: 3"} {
		if !strings.Contains(out, s) {
			t.Errorf("summary lacks %q:\n%s", s, out)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(encode(f, sample()))
	f.Add(encode(f, &Snapshot{}))
	f.Add([]byte(Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever Read accepts, Write must be able to write, and that
		// must read back to the same contents.
		var buf bytes.Buffer
		if err := Write(&buf, s); err != nil {
			t.Fatalf("Write of an accepted snapshot: %v", err)
		}
		again, err := Read(&buf)
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("re-read differs: %+v vs %+v", again, s)
		}
		if _, err := Inspect(bytes.NewReader(data)); err != nil {
			t.Fatalf("Inspect refuses what Read accepts: %v", err)
		}
	})
}
