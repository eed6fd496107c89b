package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// storeEntries appends entries first..last (one per call, as a lone
// proposal would be) to s.
func storeEntries(t *testing.T, s raft.LogStore, first, last uint64) {
	t.Helper()
	for i := first; i <= last; i++ {
		if err := s.StoreLogs([]*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("grant")}}); err != nil {
			t.Fatalf("store entry %d: %v", i, err)
		}
	}
}

// checkEntries fails unless s holds exactly first..last.
func checkEntries(t *testing.T, s raft.LogStore, first, last uint64) {
	t.Helper()
	f, err1 := s.FirstIndex()
	l, err2 := s.LastIndex()
	if err := errors.Join(err1, err2); err != nil || f != first || l != last {
		t.Fatalf("log holds %d..%d (%v), want %d..%d", f, l, err, first, last)
	}
	var e raft.Log
	for i := first; i <= last; i++ {
		if err := s.GetLog(i, &e); err != nil || e.Index != i || string(e.Data) != "grant" {
			t.Fatalf("entry %d: %+v, %v", i, e, err)
		}
	}
}

func mustOpen(t *testing.T, dir, want string) *dataStores {
	t.Helper()
	s, err := openDataStores(dir, want, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("open %s (want %q): %v", dir, want, err)
	}
	return s
}

// TestRaftLogDetection: a new data dir gets the configured log (raft-wal by
// default); a data dir with a log keeps it whatever is configured, entries
// and the stable store intact, and nothing is converted.
func TestRaftLogDetection(t *testing.T) {
	for _, tc := range []struct{ want, kind, other string }{
		{"", RaftLogWAL, RaftLogBoltDB},
		{RaftLogWAL, RaftLogWAL, RaftLogBoltDB},
		{RaftLogBoltDB, RaftLogBoltDB, RaftLogWAL},
	} {
		t.Run("want="+tc.want, func(t *testing.T) {
			dir := t.TempDir()
			if k, err := detectRaftLog(dir); err != nil || k != "" {
				t.Fatalf("empty data dir detected as %q, %v", k, err)
			}
			s := mustOpen(t, dir, tc.want)
			if s.Kind() != tc.kind {
				t.Fatalf("new data dir got %q, want %q", s.Kind(), tc.kind)
			}
			storeEntries(t, s.Log(), 1, 50)
			if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			_, walErr := os.Stat(filepath.Join(dir, walDirName))
			if hasWAL := walErr == nil; hasWAL != (tc.kind == RaftLogWAL) {
				t.Fatalf("%s data dir: wal/ present %v", tc.kind, hasWAL)
			}
			if k, err := detectRaftLog(dir); err != nil || k != tc.kind {
				t.Fatalf("detected %q (%v), want %q", k, err, tc.kind)
			}
			// Reopened with the other kind configured: it keeps its own.
			for _, want := range []string{tc.other, "", tc.kind} {
				s = mustOpen(t, dir, want)
				if s.Kind() != tc.kind {
					t.Fatalf("reopened with %q: %q, want %q", want, s.Kind(), tc.kind)
				}
				checkEntries(t, s.Log(), 1, 50)
				if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
					t.Fatalf("stable store: term %d, %v", term, err)
				}
				if tc.kind == RaftLogWAL {
					if n, err := s.BoltStore.LastIndex(); err != nil || n != 0 {
						t.Fatalf("raft.db of a WAL data dir holds log entries up to %d (%v)", n, err)
					}
				}
				s.Close()
			}
		})
	}
}

// TestRaftLogInBothRefused: a wal/ directory beside a raft.db that holds log
// entries is no data dir this code makes; opening it is refused rather than
// ignoring one of the logs.
func TestRaftLogInBothRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, RaftLogBoltDB)
	storeEntries(t, s.Log(), 1, 3)
	s.Close()
	if err := os.Mkdir(filepath.Join(dir, walDirName), 0o750); err != nil {
		t.Fatal(err)
	}
	_, err := openDataStores(dir, "", nil)
	if err == nil || !strings.Contains(err.Error(), "refusing to choose") {
		t.Fatalf("open: %v, want a refusal", err)
	}
	// Nothing stays open: the bolt store opens again at once.
	b, err := openBolt(filepath.Join(dir, boltFileName))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// bounded runs f and fails the test if it has not returned within limit: a
// lock wait must end with an error, never hang.
func bounded(t *testing.T, limit time.Duration, f func() error) (error, time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("still waiting after %v", limit)
		return nil, 0
	}
}

// TestStoresLockTimeout: a data dir whose stores are open (here, in this
// process, as a node that was not closed would hold them) cannot be opened
// again; the open fails after storeLockWait with an error that says why,
// for both kinds, and also when only raft-wal's wal-meta.db is held
// (raft-wal would wait on it for good). Closed, the data dir opens at once.
func TestStoresLockTimeout(t *testing.T) {
	for _, kind := range []string{RaftLogWAL, RaftLogBoltDB} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir, kind)
			err, took := bounded(t, 10*storeLockWait, func() error {
				s2, err := openDataStores(dir, kind, nil)
				if err == nil {
					s2.Close()
				}
				return err
			})
			if err == nil || !strings.Contains(err.Error(), "is locked") || !strings.Contains(err.Error(), boltFileName) {
				t.Fatalf("second open: %v, want raft.db is locked", err)
			}
			if took < storeLockWait/2 { // bbolt counts its wait in 50 ms steps
				t.Fatalf("gave up after %v, well before the lock wait (%v)", took, storeLockWait)
			}
			s.Close()
			s = mustOpen(t, dir, kind)
			s.Close()
		})
	}
	t.Run("wal-meta.db", func(t *testing.T) {
		dir := t.TempDir()
		mustOpen(t, dir, RaftLogWAL).Close()
		// raft-wal's meta store held alone, as a WAL that was never closed
		// would hold it after its raft.db was.
		w, err := raftwal.Open(filepath.Join(dir, walDirName))
		if err != nil {
			t.Fatal(err)
		}
		err, _ = bounded(t, 10*storeLockWait, func() error {
			s, err := openDataStores(dir, "", nil)
			if err == nil {
				s.Close()
			}
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "wal-meta.db is locked") {
			t.Fatalf("open with wal-meta.db held: %v, want wal-meta.db is locked", err)
		}
		w.Close()
		// raft.db was let go when the open failed.
		mustOpen(t, dir, "").Close()
	})
}

// plainWrap is a log store wrapper that, like the faults' slow store,
// embeds the interface and so hides IsMonotonic.
type plainWrap struct{ raft.LogStore }

// TestKeepMonotonic: a wrapper around raft-wal still tells raft that the
// store takes no gaps; around raft-boltdb it tells nothing new.
func TestKeepMonotonic(t *testing.T) {
	isMono := func(s raft.LogStore) bool {
		m, ok := s.(raft.MonotonicLogStore)
		return ok && m.IsMonotonic()
	}
	for _, kind := range []string{RaftLogWAL, RaftLogBoltDB} {
		s := mustOpen(t, t.TempDir(), kind)
		got := keepMonotonic(s.Log(), plainWrap{s.Log()})
		if isMono(got) != (kind == RaftLogWAL) {
			t.Errorf("%s behind a wrapper: monotonic %v", kind, isMono(got))
		}
		s.Close()
	}
	var rs raftStack
	cfg := Config{DataDir: t.TempDir(), Logger: hclog.NewNullLogger(),
		Faults: &Faults{LogStore: func(s raft.LogStore) raft.LogStore { return plainWrap{s} }}}
	if err := rs.openStores(cfg); err != nil {
		t.Fatal(err)
	}
	defer rs.bolt.Close()
	if !isMono(rs.logs) {
		t.Fatal("the node's log (WAL behind the faults' wrapper and the cache) is not monotonic")
	}
}

// TestRaftLogConfig: --raft-log takes wal, boltdb or nothing.
func TestRaftLogConfig(t *testing.T) {
	base := Config{Name: "n1", DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0"}
	for kind, ok := range map[string]bool{"": true, RaftLogWAL: true, RaftLogBoltDB: true, "bolt": false, "WAL": false} {
		cfg := base
		cfg.RaftLog = kind
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("RaftLog %q: %v", kind, err)
		}
	}
}

// TestClusterMixedRaftLogs: nodes on raft-wal and on raft-boltdb replicate
// one log alike; a boltdb node restarted with the WAL configured keeps its
// boltdb log (never converted), catches up, and says which log it keeps.
func TestClusterMixedRaftLogs(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.Name == "n3" {
			cfg.RaftLog = RaftLogBoltDB
		}
	})
	defer c.stopAll()
	grant := func(n int) {
		t.Helper()
		for range n {
			_, ld := c.leader()
			if _, _, err := ld.ops.grant(ctxT(t), 0, time.Minute.Milliseconds(), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	grant(20)
	c.converge()
	for i, want := range []string{RaftLogWAL, RaftLogWAL, RaftLogBoltDB} {
		if got := c.node(i).info.status(false).RaftLog; got != want {
			t.Fatalf("n%d keeps %q, want %q", i+1, got, want)
		}
	}
	c.kill(2)
	grant(20)
	cfg := c.cfgs[2]
	cfg.RaftLog = RaftLogWAL
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.setNode(2, n)
	c.converge()
	if got := n.info.status(false).RaftLog; got != RaftLogBoltDB {
		t.Fatalf("restarted with --raft-log wal: keeps %q, want boltdb", got)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, walDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the boltdb data dir gained a wal/: %v", err)
	}
}

// TestWALCompactedIsGone: after raft compacts the head of a WAL log, the
// dropped entries are not found, though raft-wal's tail segment still
// holds them (raft then sends a snapshot, as with raft-boltdb).
func TestWALCompactedIsGone(t *testing.T) {
	for _, kind := range []string{RaftLogWAL, RaftLogBoltDB} {
		s := mustOpen(t, t.TempDir(), kind)
		storeEntries(t, s.Log(), 1, 100)
		if err := s.Log().DeleteRange(1, 80); err != nil {
			t.Fatal(err)
		}
		var e raft.Log
		if err := s.Log().GetLog(50, &e); !errors.Is(err, raft.ErrLogNotFound) {
			t.Errorf("%s: compacted entry 50: %v, want ErrLogNotFound", kind, err)
		}
		checkEntries(t, s.Log(), 81, 100)
		s.Close()
	}
}
