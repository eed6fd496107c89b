package faults

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/server"
)

func logs(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprint(i))})
	}
	return out
}

func lastIndex(t *testing.T, s raft.LogStore) uint64 {
	t.Helper()
	i, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestDiskLieLosesUnsynced: in lie mode writes are acknowledged and
// readable, but a kill (the wrapper dropped, the real store reopened) loses
// every one since the last sync point; the real store keeps the prefix.
func TestDiskLieLosesUnsynced(t *testing.T) {
	real := raft.NewInmemStore()
	d := newDiskStore(real)
	if err := d.StoreLogs(logs(1, 5)); err != nil {
		t.Fatal(err)
	}
	if err := d.setMode(DiskLie); err != nil {
		t.Fatal(err)
	}
	if err := d.StoreLogs(logs(6, 8)); err != nil {
		t.Fatal(err)
	}
	if err := d.StoreLog(logs(9, 9)[0]); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := d.GetLog(8, &l); err != nil || string(l.Data) != "8" {
		t.Fatalf("GetLog(8) = %q, %v; want the acknowledged entry", l.Data, err)
	}
	if got := lastIndex(t, d); got != 9 {
		t.Fatalf("LastIndex = %d through the wrapper, want 9", got)
	}
	if st := d.state(); st.Buffered != 4 || st.LastAcked != 9 {
		t.Fatalf("state %+v, want 4 buffered, last acked 9", st)
	}
	// SIGKILL: the process and its cache are gone; the disk has what was
	// synced.
	if got := lastIndex(t, real); got != 5 {
		t.Fatalf("real store's LastIndex = %d after the kill, want 5 (6-9 lost)", got)
	}
	if err := real.GetLog(6, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry 6 survived the kill: %v", err)
	}
	if err := newDiskStore(real).StoreLogs(logs(6, 6)); err != nil {
		t.Fatalf("the restarted node cannot append after the durable prefix: %v", err)
	}
}

// TestDiskLieSyncPoints: leaving lie mode, and any DeleteRange, write the
// buffer to the real store in order.
func TestDiskLieSyncPoints(t *testing.T) {
	real := raft.NewInmemStore()
	d := newDiskStore(real)
	d.setMode(DiskLie)
	d.StoreLogs(logs(1, 10))
	// A follower's truncation of a conflicting suffix.
	if err := d.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if got := lastIndex(t, real); got != 7 {
		t.Fatalf("after DeleteRange(8,10) the real store ends at %d, want 7", got)
	}
	d.StoreLogs(logs(8, 12))
	if got := lastIndex(t, real); got != 7 {
		t.Fatalf("lie mode wrote through: real store ends at %d", got)
	}
	if err := d.setMode(DiskHonest); err != nil {
		t.Fatal(err)
	}
	if got, st := lastIndex(t, real), d.state(); got != 12 || st.Buffered != 0 || st.Counters.Synced != 15 || st.Counters.Unsynced != 15 {
		t.Fatalf("after the heal: real store ends at %d, state %+v", got, st)
	}
	first, _ := d.FirstIndex()
	if first != 1 {
		t.Fatalf("FirstIndex = %d", first)
	}
}

// TestDiskErrors: writes fail with EIO and leave the real store untouched
// until the mode changes.
func TestDiskErrors(t *testing.T) {
	real := raft.NewInmemStore()
	d := newDiskStore(real)
	d.StoreLogs(logs(1, 3))
	d.setMode(DiskErrors)
	if err := d.StoreLogs(logs(4, 5)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("StoreLogs in errors mode: %v, want EIO", err)
	}
	if err := d.DeleteRange(1, 2); !errors.Is(err, syscall.EIO) {
		t.Fatalf("DeleteRange in errors mode: %v, want EIO", err)
	}
	if got := lastIndex(t, d); got != 3 {
		t.Fatalf("LastIndex = %d after failed writes, want 3", got)
	}
	d.setMode(DiskHonest)
	if err := d.StoreLogs(logs(4, 5)); err != nil || lastIndex(t, real) != 5 {
		t.Fatalf("after the heal: %v, real store ends at %d", err, lastIndex(t, real))
	}
	if st := d.state(); st.Counters.Failed != 2 {
		t.Fatalf("state %+v, want 2 failed writes", st)
	}
}

// TestDiskStall: a stalled disk blocks new writes, so the acknowledged
// index the harness reads before a kill is final.
func TestDiskStall(t *testing.T) {
	d := newDiskStore(raft.NewInmemStore())
	d.setMode(DiskLie)
	d.StoreLogs(logs(1, 2))
	d.setMode(DiskStall)
	done := make(chan error, 1)
	go func() { done <- d.StoreLogs(logs(3, 3)) }()
	select {
	case err := <-done:
		t.Fatalf("a write returned (%v) on a stalled disk", err)
	case <-time.After(50 * time.Millisecond):
	}
	if st := d.state(); st.LastAcked != 2 || st.Buffered != 2 {
		t.Fatalf("stalled state %+v, want last acked 2, 2 buffered", st)
	}
	d.setMode(DiskLie)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := d.state(); st.LastAcked != 3 {
		t.Fatalf("state %+v after the stall ended", st)
	}
	if err := d.setMode("flaky"); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

func TestSnapshotKnobs(t *testing.T) {
	t.Setenv(snapshotEnv, "threshold=32, interval=500ms,trailing=16")
	var cfg server.Config
	if err := snapshotKnobs(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.SnapshotThreshold != 32 || cfg.SnapshotInterval != 500*time.Millisecond || cfg.TrailingLogs != 16 {
		t.Fatalf("got threshold %d interval %v trailing %d", cfg.SnapshotThreshold, cfg.SnapshotInterval, cfg.TrailingLogs)
	}
	t.Setenv(snapshotEnv, "thresh=1")
	if err := snapshotKnobs(&cfg); err == nil {
		t.Fatal("unknown key accepted")
	}
}

// TestDiskStallCompacts: a compaction during a stall still syncs and
// deletes, so a snapshot is never left newer than the durable log.
func TestDiskStallCompacts(t *testing.T) {
	real := raft.NewInmemStore()
	d := newDiskStore(real)
	d.setMode(DiskLie)
	d.StoreLogs(logs(1, 10))
	d.setMode(DiskStall)
	done := make(chan error, 1)
	go func() { done <- d.DeleteRange(1, 4) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DeleteRange waited out the stall")
	}
	if first, last := func() (uint64, uint64) { f, _ := real.FirstIndex(); l, _ := real.LastIndex(); return f, l }(); first != 5 || last != 10 {
		t.Fatalf("real store holds %d-%d, want 5-10", first, last)
	}
}
