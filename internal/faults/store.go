package faults

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/server"
)

// The modes of a node's log disk (POST /chaos/disk?mode=...).
const (
	// DiskHonest: every write goes to the real log store, which fsyncs it
	// before it returns (raft-wal and raft-boltdb both do).
	DiskHonest = "honest"
	// DiskLie: a disk whose write cache lies about fsync. Writes are
	// acknowledged at once and kept in memory (the volatile cache); reads
	// see them, and they reach the real store only at the next sync point:
	// a DeleteRange (log truncation or compaction, which the wrapper cannot
	// buffer) or leaving the mode. A SIGKILL in between loses every write
	// acknowledged since the last sync point, as a power cut loses a lying
	// disk's cache; the real store keeps a consistent prefix of the log.
	DiskLie = "lie"
	// DiskStall: like DiskLie, but new writes block (until the mode
	// changes) instead of being acknowledged (DeleteRange still syncs and
	// deletes), so that LastAcked is final:
	// the harness stalls a lying disk, reads what it acknowledged, then
	// kills the node.
	DiskStall = "stall"
	// DiskErrors: every write fails with EIO (the real store is untouched)
	// until the mode changes, like a disk returning I/O errors.
	DiskErrors = "errors"
)

// ErrIO is the error of a log write in DiskErrors mode.
var ErrIO = fmt.Errorf("faults: log write failed (chaos disk errors): %w", syscall.EIO)

// diskStore wraps raft's log store with a disk that can lie about fsync or
// fail writes. In honest mode it passes everything through.
type diskStore struct {
	raft.LogStore
	mu      sync.Mutex
	changed *sync.Cond   // broadcast when mode changes (stalled writes wait on it)
	mode    string       // one of the Disk* modes
	buf     []*raft.Log  // acknowledged in lie mode, not yet in LogStore; contiguous indexes
	acked   uint64       // highest index acknowledged by StoreLog(s), durably or not
	stats   diskCounters // totals for /chaos/state
}

// diskCounters are reported by /chaos/state.
type diskCounters struct {
	Unsynced int64 `json:"unsynced_writes"` // entries acknowledged in lie mode, total
	Synced   int64 `json:"synced_writes"`   // of those, written to the real store at a sync point
	Failed   int64 `json:"failed_writes"`   // StoreLog(s) calls failed in errors mode
}

func newDiskStore(s raft.LogStore) *diskStore {
	d := &diskStore{LogStore: s, mode: DiskHonest}
	d.changed = sync.NewCond(&d.mu)
	return d
}

// DiskState is the disk's part of /chaos/state.
type DiskState struct {
	Mode      string       `json:"mode"`
	Buffered  int          `json:"buffered"`   // acknowledged entries a kill would lose now
	LastAcked uint64       `json:"last_acked"` // highest index acknowledged since start
	Counters  diskCounters `json:"counters"`
}

func (d *diskStore) state() DiskState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DiskState{Mode: d.mode, Buffered: len(d.buf), LastAcked: d.acked, Counters: d.stats}
}

// setMode switches the disk's mode. Leaving lie (or stall) for honest or
// errors is a sync point: the buffer is written to the real store first.
func (d *diskStore) setMode(mode string) error {
	switch mode {
	case DiskHonest, DiskLie, DiskStall, DiskErrors:
	default:
		return fmt.Errorf("unknown disk mode %q (want %s, %s, %s or %s)", mode, DiskHonest, DiskLie, DiskStall, DiskErrors)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if mode != DiskLie && mode != DiskStall {
		err = d.syncLocked()
	}
	d.mode = mode
	d.changed.Broadcast()
	return err
}

// syncLocked writes the buffered entries to the real store (a sync point).
func (d *diskStore) syncLocked() error {
	if len(d.buf) == 0 {
		return nil
	}
	if err := d.LogStore.StoreLogs(d.buf); err != nil {
		return err
	}
	d.stats.Synced += int64(len(d.buf))
	d.buf = nil
	return nil
}

func (d *diskStore) StoreLog(l *raft.Log) error { return d.StoreLogs([]*raft.Log{l}) }

func (d *diskStore) StoreLogs(ls []*raft.Log) error {
	if len(ls) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.mode == DiskStall {
		d.changed.Wait()
	}
	switch d.mode {
	case DiskErrors:
		d.stats.Failed++
		return ErrIO
	case DiskLie:
		if n := len(d.buf); n > 0 && ls[0].Index != d.buf[n-1].Index+1 {
			// Not an append after the buffer (raft truncates with
			// DeleteRange first, so this does not happen): sync, then
			// store honestly.
			if err := d.syncLocked(); err != nil {
				return err
			}
		} else {
			for _, l := range ls {
				c := *l // raft may reuse l after StoreLogs returns
				c.Data = append([]byte(nil), l.Data...)
				c.Extensions = append([]byte(nil), l.Extensions...)
				d.buf = append(d.buf, &c)
			}
			d.stats.Unsynced += int64(len(ls))
			d.acked = max(d.acked, ls[len(ls)-1].Index)
			return nil
		}
	}
	if err := d.LogStore.StoreLogs(ls); err != nil {
		return err
	}
	d.acked = max(d.acked, ls[len(ls)-1].Index)
	return nil
}

func (d *diskStore) GetLog(index uint64, l *raft.Log) error {
	d.mu.Lock()
	if n := len(d.buf); n > 0 && index >= d.buf[0].Index && index <= d.buf[n-1].Index {
		*l = *d.buf[index-d.buf[0].Index]
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()
	return d.LogStore.GetLog(index, l)
}

func (d *diskStore) LastIndex() (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.buf); n > 0 {
		return d.buf[n-1].Index, nil
	}
	return d.LogStore.LastIndex()
}

func (d *diskStore) FirstIndex() (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	first, err := d.LogStore.FirstIndex()
	if err == nil && first == 0 && len(d.buf) > 0 {
		first = d.buf[0].Index
	}
	return first, err
}

// DeleteRange is a sync point: the buffer is written first, so that the
// deletion applies to the log as raft sees it. It does not wait out a
// stall: raft compacts right after it persisted a snapshot, and a kill
// between the two would leave the snapshot newer than the durable log
// (which raft-wal, appending only contiguously, could never extend).
func (d *diskStore) DeleteRange(lo, hi uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mode == DiskErrors {
		d.stats.Failed++
		return ErrIO
	}
	if err := d.syncLocked(); err != nil {
		return err
	}
	return d.LogStore.DeleteRange(lo, hi)
}

// snapshotEnv configures raft's snapshots in the chaos build, so that chaos
// runs exercise snapshot writes, installs and log compaction: a value of
// the form "threshold=32,interval=500ms,trailing=16" (any subset) overrides
// --snapshot-threshold, the snapshot check interval (default 30 s, which a
// 40 s run would hardly reach) and the entries kept after a snapshot
// (default 10,240, which no chaos run outgrows, so a restarted follower
// would never need an install).
const snapshotEnv = "LEASECLUSTER_CHAOS_SNAPSHOTS"

// snapshotKnobs applies snapshotEnv to cfg.
func snapshotKnobs(cfg *server.Config) error {
	v := os.Getenv(snapshotEnv)
	if v == "" {
		return nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(kv), "=")
		var err error
		switch k {
		case "threshold":
			cfg.SnapshotThreshold, err = strconv.ParseUint(val, 10, 64)
		case "trailing":
			cfg.TrailingLogs, err = strconv.ParseUint(val, 10, 64)
		case "interval":
			cfg.SnapshotInterval, err = time.ParseDuration(val)
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return fmt.Errorf("%s: %q: %v", snapshotEnv, kv, err)
		}
	}
	return nil
}
