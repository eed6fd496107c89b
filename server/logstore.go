package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// The kinds of raft log a data dir may hold (Config.RaftLog, --raft-log).
const (
	// RaftLogWAL keeps the log in hashicorp/raft-wal under <data-dir>/wal:
	// one append and one fsync per write. The default for new data dirs.
	RaftLogWAL = "wal"
	// RaftLogBoltDB keeps the log in <data-dir>/raft.db beside the stable
	// store: every data dir made before raft-wal, and new ones on request.
	RaftLogBoltDB = "boltdb"
)

// The files of a data dir's raft state (besides snapshots/).
const (
	boltFileName = "raft.db" // the stable store (term, vote); the log too for RaftLogBoltDB
	walDirName   = "wal"     // raft-wal's wal-meta.db and segment files, for RaftLogWAL
)

// storeLockWait is how long opening a data dir waits for another holder of
// raft.db or wal-meta.db to let go (another process on the same data dir, or
// a node in this process whose stores are still open) before it fails.
const storeLockWait = time.Second

// checkRaftLog is Config.Validate's check of RaftLog.
func checkRaftLog(kind string) error {
	switch kind {
	case "", RaftLogWAL, RaftLogBoltDB:
		return nil
	}
	return fmt.Errorf("server: raft log %q is neither %q nor %q", kind, RaftLogWAL, RaftLogBoltDB)
}

// detectRaftLog reports which log dataDir holds, from its files alone:
// RaftLogWAL if it has a wal/ directory; otherwise RaftLogBoltDB if it has a
// raft.db (every data dir made before raft-wal: their log is in raft.db);
// otherwise "" (a new data dir, whose kind the configuration chooses). A new
// WAL data dir gets its wal/ directory before its raft.db, so a crash at any
// point of its creation leaves it detected as what it was meant to be.
func detectRaftLog(dataDir string) (string, error) {
	for _, c := range []struct{ name, kind string }{{walDirName, RaftLogWAL}, {boltFileName, RaftLogBoltDB}} {
		_, err := os.Stat(filepath.Join(dataDir, c.name))
		if err == nil {
			return c.kind, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("server: inspect data dir: %w", err)
		}
	}
	return "", nil
}

// dataStores are the raft stores of one data dir: raft-boltdb as the stable
// store, always (embedded: raft.NewRaft and raft.HasExistingState take it as
// the StableStore), and the log, raft-boltdb's own or raft-wal's.
type dataStores struct {
	*raftboltdb.BoltStore
	kind string        // RaftLogWAL or RaftLogBoltDB
	log  raft.LogStore // the BoltStore or walLog{wal}
	wal  *raftwal.WAL  // nil for RaftLogBoltDB

	closeOnce sync.Once
	closeErr  error
}

// Kind is RaftLogWAL or RaftLogBoltDB.
func (s *dataStores) Kind() string { return s.kind }

// Log is raft's log store (without a cache).
func (s *dataStores) Log() raft.LogStore { return s.log }

// Close closes the log, then the stable store; it may be called more than
// once. Raft must have been shut down first. Every stop path of a node
// reaches it: a WAL left open keeps wal-meta.db locked, and the next open of
// the data dir in this process would fail (storeLockWait).
func (s *dataStores) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.wal != nil {
			if err := s.wal.Close(); err != nil {
				errs = append(errs, fmt.Errorf("server: close raft-wal: %w", err))
			}
		}
		if err := s.BoltStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("server: close %s: %w", boltFileName, err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// openDataStores opens the raft log and stable store of dataDir, creating
// them if it has none. A new data dir gets the log kind want ("": RaftLogWAL).
// A data dir that has a log keeps it whatever want says (never converted);
// a differing want is logged. Raft's snapshots are not opened here.
// Restores and tools open a data dir through this too, so that they see the
// same detection and locking as a node. The caller closes the stores.
func openDataStores(dataDir, want string, logger hclog.Logger) (*dataStores, error) {
	if err := checkRaftLog(want); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if want == "" {
		want = RaftLogWAL
	}
	kind, err := detectRaftLog(dataDir)
	if err != nil {
		return nil, err
	}
	switch {
	case kind == "" && want == RaftLogWAL:
		// The wal/ directory is the mark of a WAL data dir: it comes first,
		// and durably, before raft.db exists.
		if err := makeDirDurable(dataDir, walDirName); err != nil {
			return nil, err
		}
		kind = RaftLogWAL
	case kind == "":
		kind = want
	case kind != want:
		logger.Warn("the data dir keeps its raft log; --raft-log chooses only for new data dirs (no conversion)",
			"raft_log", kind, "configured", want, "data_dir", dataDir)
	}
	s := &dataStores{kind: kind}
	if s.BoltStore, err = openBolt(filepath.Join(dataDir, boltFileName)); err != nil {
		return nil, err
	}
	s.log = s.BoltStore
	if kind == RaftLogWAL {
		if s.wal, err = openWAL(filepath.Join(dataDir, walDirName), s.BoltStore, logger); err != nil {
			s.BoltStore.Close()
			return nil, err
		}
		s.log = walLog{s.wal}
	}
	logger.Debug("raft stores open", "raft_log", kind, "data_dir", dataDir)
	return s, nil
}

// openBolt opens raft.db, waiting at most storeLockWait for its lock.
func openBolt(path string) (*raftboltdb.BoltStore, error) {
	st, err := raftboltdb.New(raftboltdb.Options{
		Path: path,
		// The freelist grows as raft compacts its log; writing it on every
		// commit costs I/O on the hot path. bbolt rebuilds it on open
		// instead (Consul runs raft-boltdb the same way).
		BoltOptions: &bbolt.Options{Timeout: storeLockWait, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("server: %s is locked: another process (or a node in this one that has not closed its stores) has the data dir open; waited %v", path, storeLockWait)
	}
	if err != nil {
		return nil, fmt.Errorf("server: open %s: %w", path, err)
	}
	return st, nil
}

// openWAL opens the raft-wal log in dir. raft-wal opens its wal-meta.db
// (bbolt) with no lock timeout, so a held lock would block the open for
// good; the lock is therefore tried first, for at most storeLockWait, and a
// held lock is an error. Between that try and raft-wal's own open no other
// opener of this data dir can take it: each holds raft.db (opened first,
// closed last) while it has the WAL open. bolt's log must be empty: a data
// dir with entries in both is not one this code made.
func openWAL(dir string, bolt *raftboltdb.BoltStore, logger hclog.Logger) (*raftwal.WAL, error) {
	if first, err := bolt.FirstIndex(); err != nil || first != 0 {
		return nil, fmt.Errorf("server: %s holds a raft-wal log and raft.db holds log entries too (first index %d, %v): refusing to choose one", dir, first, err)
	}
	meta := filepath.Join(dir, metadb.FileName)
	if err := waitUnlocked(meta, storeLockWait); err != nil {
		return nil, err
	}
	// The meta store is ours, so that a failed open still closes it (and
	// lets its lock go); raft-wal leaves it open on some errors.
	md := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(dir, raftwal.WithMetaStore(md), raftwal.WithLogger(logger.Named("raft-wal")))
	if err != nil {
		md.Close()
		return nil, fmt.Errorf("server: open raft-wal log in %s: %w", dir, err)
	}
	return w, nil
}

// waitUnlocked returns nil once nobody holds path's bbolt lock (or path
// does not exist yet), and an error naming the file if the lock is still
// held after wait.
func waitUnlocked(path string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		free, err := lockFree(path)
		switch {
		case err != nil:
			return fmt.Errorf("server: check the lock of %s: %w", path, err)
		case free:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("server: %s is locked: another process (or a node in this one that has not closed its raft-wal log) has the data dir open; waited %v", path, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// makeDirDurable creates parent/name and syncs parent, so that the new
// entry survives a power loss.
func makeDirDurable(parent, name string) error {
	if err := os.Mkdir(filepath.Join(parent, name), 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("server: create %s: %w", name, err)
	}
	d, err := os.Open(parent)
	if err != nil {
		return fmt.Errorf("server: sync data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("server: sync data dir: %w", err)
	}
	return nil
}

// walLog is raft-wal as raft's log store, with one difference: an entry
// below FirstIndex is not found. raft-wal drops the head of its log by
// moving its first index, and still serves the dropped entries that its
// tail segment holds (up to a segment, 64 MiB, of them), so raft would
// replicate a follower far behind from them instead of sending it a
// snapshot, and whether the snapshot path runs would depend on segment
// sizes. Compacted means gone, as in raft-boltdb (TestClusterRestartCatchesUp
// expects the snapshot). The check races with a concurrent compaction
// harmlessly: such an entry was committed and is what it was.
type walLog struct{ *raftwal.WAL }

func (w walLog) GetLog(index uint64, l *raft.Log) error {
	first, err := w.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return w.WAL.GetLog(index, l)
}

// monotonicLog is a log store wrapper (the faults' slow-fsync store) that
// keeps telling raft that the store under it takes no gaps: without it,
// raft would leave the entries before an installed snapshot in raft-wal,
// and raft-wal refuses the next append after the gap.
type monotonicLog struct{ raft.LogStore }

func (monotonicLog) IsMonotonic() bool { return true }

// keepMonotonic returns wrapped, made to report IsMonotonic when inner is a
// monotonic store and the wrapper does not say so itself.
func keepMonotonic(inner, wrapped raft.LogStore) raft.LogStore {
	if m, ok := inner.(raft.MonotonicLogStore); !ok || !m.IsMonotonic() {
		return wrapped
	}
	if m, ok := wrapped.(raft.MonotonicLogStore); ok && m.IsMonotonic() {
		return wrapped
	}
	return monotonicLog{wrapped}
}
