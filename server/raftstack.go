package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/transport"
)

// raftStack is raft with what it stands on: the data dir's stores (the
// raft log, raft-wal or raft-boltdb, and the raft-boltdb stable store;
// logstore.go), the snapshot store and the gRPC transport. The job types
// read raft through it and translate its errors with it.
type raftStack struct {
	raft *raft.Raft
	// bolt is the data dir's stores: the raft-boltdb stable store (promoted,
	// what raft.NewRaft takes) and the log. Its Close closes both, the log
	// first; every stop path of the node calls it.
	bolt  *dataStores
	logs  raft.LogStore // the log behind a LogCache (and the faults' wrapper)
	snaps raft.SnapshotStore
	trans *transport.Transport
}

// openStores opens the raft log, the stable store and the snapshot store in
// cfg.DataDir. On error nothing stays open; otherwise the caller closes
// rs.bolt.
func (rs *raftStack) openStores(cfg Config) error {
	ds, err := openDataStores(cfg.DataDir, cfg.RaftLog, cfg.Logger)
	if err != nil {
		return err
	}
	store := ds.Log()
	if cfg.Faults != nil && cfg.Faults.LogStore != nil {
		store = keepMonotonic(store, cfg.Faults.LogStore(store))
	}
	logs, err := newLogCache(store)
	if err != nil {
		ds.Close()
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, cfg.Logger.Named("snapshot"))
	if err != nil {
		ds.Close()
		return fmt.Errorf("server: snapshot store: %w", err)
	}
	rs.bolt, rs.logs, rs.snaps = ds, logs, snaps
	cfg.Logger.Info("raft log", "raft_log", ds.Kind())
	return nil
}

// logKind is the kind of raft log this node keeps (RaftLogWAL or
// RaftLogBoltDB).
func (rs *raftStack) logKind() string { return rs.bolt.Kind() }

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
	// raft reports each per-peer timing twice, with a peer label and under
	// a name of its own per peer; the second costs a go-metrics sample per
	// AppendEntries and heartbeat for nothing (metrics_raft.go keeps only
	// the labelled one).
	rc.NoLegacyTelemetry = true
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
