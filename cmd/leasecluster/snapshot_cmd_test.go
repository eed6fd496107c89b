package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/snapshot"
)

func TestSnapshotInspect(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	err := snapshot.Write(&buf, &snapshot.Snapshot{
		Index: 42, Term: 3,
		Leases: []lessor.LeaseState{{ID: 7, TTL: 5000, Keys: []string{"a"}}},
		Items:  []snapshot.Item{{Key: "a", LeaseID: 7, Value: "v", Revision: 40}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.bin"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}
	out, err := run("snapshot", "inspect", dir)
	if err != nil || !strings.Contains(out, "42") {
		t.Fatalf("inspect: %q %v", out, err)
	}
	out, err = run("snapshot", "inspect", "-o", "json", filepath.Join(dir, "state.bin"))
	if err != nil || !strings.Contains(out, `"Leases":1`) || !strings.Contains(out, `"Index":42`) {
		t.Fatalf("inspect json: %q %v", out, err)
	}
	// A corrupted snapshot is refused.
	b := buf.Bytes()
	b[len(b)/2] ^= 0x10
	bad := filepath.Join(dir, "bad.bin")
	os.WriteFile(bad, b, 0o600)
	if _, err := run("snapshot", "inspect", bad); err == nil {
		t.Fatal("corrupted snapshot accepted")
	}
}
