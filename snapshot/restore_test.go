package snapshot

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/lessor"
)

// Restored gives each lease its remaining TTL at save time (checkpointed
// remainder, else TTL) plus the grace, keeps everything else, raises the
// index to the highest revision, and records the source and grace; the same
// input gives the same bytes.
func TestRestored(t *testing.T) {
	src := sample()
	src.Items[2].Revision = 50 // above the header's index (42): a hand-made file
	data := encode(t, src)
	sum, err := Inspect(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		g     Grace
		want  []int64 // remainders of leases 1, 7, 9
		grace int64
	}{
		{"ttl", Grace{TTL: true}, []int64{3000, 1234 + 60000, 10000}, 0},
		{"2s", Grace{D: 2 * time.Second}, []int64{3500, 3234, 7000}, 2000},
		{"0", Grace{}, []int64{1500, 1234, 5000}, 0},
		{"rounded up", Grace{D: 1500 * time.Microsecond}, []int64{1502, 1236, 5002}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Restored(src, sum, tc.g)
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range r.Leases {
				o := src.Leases[i]
				if l.Remaining != tc.want[i] || l.ID != o.ID || l.TTL != o.TTL || l.Gen != o.Gen || l.Owner != o.Owner || !reflect.DeepEqual(l.Keys, o.Keys) {
					t.Errorf("lease %d restored as %+v (from %+v), want remainder %d", o.ID, l, o, tc.want[i])
				}
			}
			if !reflect.DeepEqual(r.Items, src.Items) || !reflect.DeepEqual(r.Dedupe, src.Dedupe) {
				t.Error("items or dedupe entries changed")
			}
			if r.Index != 50 || r.Term != src.Term {
				t.Errorf("index %d term %d, want 50 (the highest revision) and %d", r.Index, r.Term, src.Term)
			}
			want := RestoreInfo{SourceIndex: 42, SourceTerm: 3, SourceCRC: sum.Checksum, GraceMs: tc.grace, GraceIsTTL: tc.g.TTL}
			if *r.Restore != want {
				t.Errorf("restore record %+v, want %+v", *r.Restore, want)
			}
			if src.Leases[0].Remaining != 0 {
				t.Fatal("Restored changed its input")
			}
			// Deterministic and written as read.
			again, _ := Restored(src, sum, tc.g)
			b := encode(t, r)
			if !bytes.Equal(b, encode(t, again)) {
				t.Fatal("the same input restored to different bytes")
			}
			got, err := Read(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("round trip: %+v, want %+v", got, r)
			}
			s2, err := Inspect(bytes.NewReader(b))
			if err != nil || s2.Restore == nil || *s2.Restore != want {
				t.Errorf("Inspect: %+v, %v", s2.Restore, err)
			}
		})
	}
}

func TestRestoredBounds(t *testing.T) {
	ceil := int64(lessor.TTLCeiling / time.Millisecond)
	s := &Snapshot{Leases: []lessor.LeaseState{{ID: 1, TTL: ceil}}}
	r, err := Restored(s, Summary{}, Grace{TTL: true})
	if err != nil || r.Leases[0].Remaining != ceil || r.Term != 1 {
		t.Fatalf("Restored = %+v, %v; want the remainder capped at the ceiling and term 1", r, err)
	}
	if _, err := Restored(s, Summary{}, Grace{D: -time.Second}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative grace: %v", err)
	}
}

func TestParseGrace(t *testing.T) {
	for in, want := range map[string]Grace{"": {TTL: true}, "ttl": {TTL: true}, "0s": {}, "90s": {D: 90 * time.Second}} {
		if g, err := ParseGrace(in); err != nil || g != want {
			t.Errorf("ParseGrace(%q) = %+v, %v", in, g, err)
		}
	}
	for _, in := range []string{"-1s", "soon", "87660h1s"} {
		if _, err := ParseGrace(in); err == nil {
			t.Errorf("ParseGrace(%q) accepted", in)
		}
	}
}

// A restore record that no restore writes is refused, like any invalid
// record; one from a newer build (unknown field) too.
func TestRestoreRecordChecked(t *testing.T) {
	s := sample()
	s.Restore = &RestoreInfo{GraceMs: 5, GraceIsTTL: true}
	if err := Write(io.Discard, s); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Write of grace 5 ms and per-lease TTL: %v", err)
	}
	s.Restore = &RestoreInfo{GraceMs: -1}
	if err := Write(io.Discard, s); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Write of a negative grace: %v", err)
	}
}

// SaveFile keeps a file only once it is complete and valid; otherwise the
// old file (if any) stays and no temporary file is left behind.
func TestSaveFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.snap")
	good := encode(t, sample())
	sum, err := SaveFile(path, func(w io.Writer) error { _, err := w.Write(good); return err })
	if err != nil || sum.Leases != 3 || sum.Index != 42 {
		t.Fatalf("SaveFile = %+v, %v", sum, err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("saved %d bytes, %v", len(got), err)
	}
	s, sum2, err := ReadFile(path)
	if err != nil || sum2 != sum || len(s.Leases) != 3 {
		t.Fatalf("ReadFile = %+v, %v", sum2, err)
	}

	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	for name, fill := range map[string]func(io.Writer) error{
		"corrupt":   func(w io.Writer) error { _, err := w.Write(bad); return err },
		"truncated": func(w io.Writer) error { _, err := w.Write(good[:len(good)-3]); return err },
		"failed":    func(w io.Writer) error { w.Write(good[:10]); return errors.New("stream broke") },
	} {
		if _, err := SaveFile(path, fill); err == nil {
			t.Errorf("%s: SaveFile succeeded", name)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, good) {
			t.Errorf("%s: the earlier file was replaced", name)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left in %s: %v", dir, ents)
	}
}
