package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/leasecluster/leasecluster/transport"
)

// raftStack is raft with what it stands on: the bolt file that holds the log
// and the stable store, the snapshot store and the gRPC transport. The job
// types read raft through it and translate its errors with it.
type raftStack struct {
	raft  *raft.Raft
	bolt  *raftboltdb.BoltStore
	logs  raft.LogStore // bolt behind a LogCache (and the faults' wrapper)
	snaps raft.SnapshotStore
	trans *transport.Transport
}

// openStores opens the raft log, the stable store and the snapshot store in
// cfg.DataDir. The caller closes rs.bolt if a later step fails.
func (rs *raftStack) openStores(cfg Config) error {
	var err error
	rs.bolt, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.DataDir, "raft.db"),
		// The freelist grows as raft compacts its log; writing it on every
		// commit costs I/O on the hot path. bbolt rebuilds it on open
		// instead (Consul runs raft-boltdb the same way).
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return fmt.Errorf("server: open raft log: %w", err)
	}
	var store raft.LogStore = rs.bolt
	if cfg.Faults != nil && cfg.Faults.LogStore != nil {
		store = cfg.Faults.LogStore(store)
	}
	if rs.logs, err = raft.NewLogCache(1024, store); err != nil {
		return err
	}
	rs.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, cfg.Logger.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("server: snapshot store: %w", err)
	}
	return nil
}

// raftConfig is raft's configuration for this node.
func raftConfig(cfg Config, notify chan bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = min(rc.CommitTimeout, cfg.HeartbeatTimeout/10)
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NotifyCh = notify
	// BatchApplyCh stays off: with a buffered apply channel, a Barrier or
	// Apply queued as raft shuts down is never answered (those futures do
	// not watch raft's shutdown), and a waiter hangs for good. Unbuffered,
	// a future is either taken by raft's loop, which always answers it, or
	// refused with ErrRaftShutdown; the leader loop still group-commits every
	// proposer that is waiting.
	rc.BatchApplyCh = false
	rc.MaxAppendEntries = 512
	rc.Logger = cfg.Logger.Named("raft")
	return rc
}

// bootstrap starts a new cluster from cfg.InitialCluster when the data dir
// holds no Raft state; afterwards the flag is ignored.
func (rs *raftStack) bootstrap(cfg Config) error {
	existing, err := raft.HasExistingState(rs.logs, rs.bolt, rs.snaps)
	if err != nil {
		return fmt.Errorf("server: inspect raft state: %w", err)
	}
	if existing || len(cfg.InitialCluster) == 0 {
		return nil
	}
	var conf raft.Configuration
	member := false
	for _, p := range cfg.InitialCluster {
		addr := p.Address
		if p.Name == cfg.Name {
			member, addr = true, cfg.AdvertiseAddr
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Name), Address: raft.ServerAddress(addr)})
	}
	if !member {
		return fmt.Errorf("server: node %q is not in the initial cluster", cfg.Name)
	}
	cfg.Logger.Info("bootstrapping a new cluster", "members", len(conf.Servers))
	if err := rs.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("server: bootstrap: %w", err)
	}
	return nil
}

// notLeader builds the error a non-leader answers with, naming the leader.
func (rs *raftStack) notLeader() error {
	addr, id := rs.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// err translates raft's errors into this package's.
func (rs *raftStack) err(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return rs.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, rs.notLeader())
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrStopped
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return context.DeadlineExceeded
	}
	return err
}
