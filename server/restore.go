package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/snapshot"
)

// RestoreResult describes a data dir seeded by Restore.
type RestoreResult struct {
	DataDir     string
	Index, Term uint64 // of the raft snapshot the node starts from
	SourceIndex uint64 // the backup's own index
	MaxRevision uint64 // the highest restored revision; every new one exceeds Index >= it
	Leases      int
	Items       int
	Members     []Peer
	Grace       string // as recorded: "ttl (each lease's own)" or a duration
	// StateHash is the state every node restored from the same file with
	// the same grace holds at Index (cluster status shows it until the new
	// leader's first entries change the state).
	StateHash string
}

// stableKeyCurrentTerm is hashicorp/raft's stable-store key of the current
// term (raft.go: keyCurrentTerm; not exported). TestSnapshotSaveAndRestore checks
// that raft starts in the term written under it.
var stableKeyCurrentTerm = []byte("CurrentTerm")

// Restore seeds a new data dir, cfg.DataDir, from the backup file at path,
// so that `serve` on it starts a node of a new cluster whose members are
// cfg.InitialCluster, with the backup's state applied (ARCHITECTURE.md,
// "Backup and restore"). Every member restores the same file with the same
// grace: snapshot.Restored is deterministic, so they all start with the same
// state (and hash).
//
// The raft state written is what a node of a running cluster would have
// after compacting its log into a snapshot: a snapshot in the snapshot store
// at the (restored) index and term, whose configuration is
// cfg.InitialCluster, all voters; the stable store's current term set to
// that term, so that the first election is for a later term and new entries
// never carry an older term than the snapshot's; and an empty log of the
// kind raftStack gives new data dirs, which raft continues after the
// snapshot's index (hence above every restored revision). Raft restores the
// snapshot into the FSM on start, and the bootstrap is skipped (the data dir
// has raft state).
//
// The data dir must be absent or empty. Everything is written into a
// temporary sibling directory, which is renamed into place at the end, so
// an interrupted restore leaves no half-seeded data dir.
func Restore(cfg Config, path string, grace snapshot.Grace) (RestoreResult, error) {
	cfg = cfg.withDefaults()
	res := RestoreResult{DataDir: cfg.DataDir, Members: cfg.InitialCluster}
	conf, err := restoreConfiguration(cfg)
	if err != nil {
		return res, err
	}
	if err := emptyOrAbsent(cfg.DataDir); err != nil {
		return res, err
	}
	backup, sum, err := snapshot.ReadFile(path)
	if err != nil {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	seeded, err := snapshot.Restored(backup, sum, grace)
	if err != nil {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	var buf bytes.Buffer
	if err := snapshot.Write(&buf, seeded); err != nil {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	// The FSM's own checks (item and identity limits) and the state hash
	// the nodes will report: restore it into a scratch FSM, as raft will.
	if res.StateHash, err = restoredHash(buf.Bytes()); err != nil {
		return res, err
	}
	res.Index, res.Term, res.SourceIndex = seeded.Index, seeded.Term, backup.Index
	res.MaxRevision, res.Leases, res.Items = snapshot.MaxRevision(seeded), len(seeded.Leases), len(seeded.Items)
	res.Grace = seeded.Restore.GraceString()

	parent := filepath.Dir(filepath.Clean(cfg.DataDir))
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	stage, err := os.MkdirTemp(parent, "."+filepath.Base(cfg.DataDir)+".restore-*")
	if err != nil {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	defer os.RemoveAll(stage) // after the rename, nothing is left there
	scfg := cfg
	scfg.DataDir = stage
	if err := seedRaft(scfg, conf, seeded, buf.Bytes()); err != nil {
		return res, err
	}
	// An empty data dir (a mount point's, say) is replaced by the seeded one.
	if err := os.Remove(cfg.DataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	if err := os.Rename(stage, cfg.DataDir); err != nil {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	if err := syncParentDir(parent); err != nil {
		return res, fmt.Errorf("server: restore: %w", err)
	}
	cfg.Logger.Info("data dir seeded from a backup", "data_dir", cfg.DataDir, "index", res.Index, "term", res.Term,
		"leases", res.Leases, "items", res.Items, "grace", res.Grace, "state_hash", res.StateHash)
	return res, nil
}

// restoreConfiguration is cfg.InitialCluster as raft's configuration, all
// voters; cfg.Name must be one of them.
func restoreConfiguration(cfg Config) (raft.Configuration, error) {
	var conf raft.Configuration
	if cfg.Name == "" || cfg.DataDir == "" {
		return conf, errors.New("server: restore needs a name and a data dir")
	}
	member := false
	addrs := map[string]bool{}
	for _, p := range cfg.InitialCluster {
		if p.Name == "" || p.Address == "" || addrs[p.Address] {
			return conf, fmt.Errorf("server: restore: initial cluster member %+v is incomplete or repeats an address", p)
		}
		addrs[p.Address] = true
		member = member || p.Name == cfg.Name
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.Address)})
	}
	if !member {
		return conf, fmt.Errorf("server: restore: node %q is not in the initial cluster", cfg.Name)
	}
	return conf, nil
}

// emptyOrAbsent refuses a data dir that holds anything: restoring over a
// node's state would fork its history.
func emptyOrAbsent(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("server: restore: data dir: %w", err)
	case len(ents) > 0:
		return fmt.Errorf("server: restore: data dir %s is not empty; restore seeds a new node only", dir)
	}
	return nil
}

// restoredHash restores data into a scratch FSM and returns its state hash.
func restoredHash(data []byte) (string, error) {
	le, err := lessor.NewLessor(lessor.Config{})
	if err != nil {
		return "", err
	}
	defer le.Stop()
	f, err := fsm.New(fsm.Config{Lessor: le, Logger: hclog.NewNullLogger()})
	if err != nil {
		return "", err
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		return "", fmt.Errorf("server: restore: %w", err)
	}
	h, _ := f.StateHashAt()
	return h, nil
}

// seedRaft writes raft's state into cfg.DataDir through raftStack's store
// opening (so the log is whatever a new data dir gets): the current term,
// then the snapshot. The term comes first: a data dir with a term and no
// snapshot refuses to bootstrap, where one with a snapshot and term 0 would
// elect a leader in a term below the snapshot's.
func seedRaft(cfg Config, conf raft.Configuration, s *snapshot.Snapshot, data []byte) error {
	var rs raftStack
	if err := rs.openStores(cfg); err != nil {
		return err
	}
	defer rs.bolt.Close()
	existing, err := raft.HasExistingState(rs.logs, rs.bolt, rs.snaps)
	if err != nil || existing {
		return fmt.Errorf("server: restore: the new data dir already holds raft state (%v)", err)
	}
	if err := rs.bolt.SetUint64(stableKeyCurrentTerm, s.Term); err != nil {
		return fmt.Errorf("server: restore: set the term: %w", err)
	}
	// The transport only encodes the members' addresses for version-0
	// readers of the snapshot metadata; ours writes the address as is too.
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := rs.snaps.Create(raft.SnapshotVersionMax, s.Index, s.Term, conf, s.Index, trans)
	if err != nil {
		return fmt.Errorf("server: restore: create snapshot: %w", err)
	}
	if _, err := sink.Write(data); err != nil {
		sink.Cancel()
		return fmt.Errorf("server: restore: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("server: restore: write snapshot: %w", err)
	}
	return nil
}

func syncParentDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
