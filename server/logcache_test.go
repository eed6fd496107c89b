package server

import (
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestLogCacheKeepsNoFuture: the log cache must not keep alive what holds
// the entries raft stores. raft passes the leader's StoreLogs pointers into
// its apply futures, whose responses are a batch entry's results; a cache
// of those pointers kept 1,024 entries' results in memory.
func TestLogCacheKeepsNoFuture(t *testing.T) {
	store := raft.NewInmemStore()
	cache, err := newLogCache(store)
	if err != nil {
		t.Fatal(err)
	}
	type future struct { // the shape of raft's logFuture
		log      raft.Log
		response *[1 << 20]byte
	}
	freed := make(chan struct{})
	func() {
		f := &future{log: raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("grant")}, response: new([1 << 20]byte)}
		runtime.SetFinalizer(f, func(*future) { close(freed) })
		if err := cache.StoreLogs([]*raft.Log{&f.log}); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		select {
		case <-freed:
			var l raft.Log
			if err := cache.GetLog(1, &l); err != nil || string(l.Data) != "grant" {
				t.Fatalf("the entry is still served from the cache: %v %q", err, l.Data)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache keeps the future of a stored entry alive")
		}
		runtime.Gosched()
	}
}

func TestLogCacheMonotonic(t *testing.T) {
	for _, kind := range []string{RaftLogBoltDB, RaftLogWAL} {
		s, err := openDataStores(t.TempDir(), kind, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := newLogCache(s.Log())
		if err != nil {
			t.Fatal(err)
		}
		m, ok := c.(raft.MonotonicLogStore)
		want := kind == RaftLogWAL
		if got := ok && m.IsMonotonic(); got != want {
			t.Errorf("%s: IsMonotonic through the cache = %v, want %v (raft must know raft-wal takes no gaps)", kind, got, want)
		}
		s.Close()
	}
}
