// Package server is one leasecluster node: Raft (raft-boltdb v2 behind a
// LogCache, a FileSnapshotStore, the gRPC transport), the FSM wrapping the
// lessor, the leadership loop that Promotes and Demotes the lessor, the
// leader-only expiry and checkpoint loops, renewals verified against a quorum,
// linearizable reads, and the gRPC and HTTP servers. See DESIGN.md.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/transport"
)

// Node is one member of a leasecluster.
type Node struct {
	cfg        Config
	log        hclog.Logger
	lessor     lessor.Lessor
	fsm        *fsm.FSM
	applied    *appliedFSM
	raft       *raft.Raft
	trans      *transport.Transport
	bolt       *raftboltdb.BoltStore
	grpc       *grpc.Server
	health     *health.Server
	lis        net.Listener
	http       *httpServer
	notifyCh   chan bool
	verifier   verifier
	renew      renewLease // lets renewals skip the verifier while raft's contacts are fresh
	metrics    *metrics
	fwd        leaderConn     // to the leader, for KeepAlive streams that reach a follower
	group      chan *proposal // to the group committer (groupcommit.go)
	groupSlots chan struct{}  // one per batch entry in flight

	leading atomic.Bool // promoted: serving renewals, proposals and reads
	termMu  sync.Mutex  // orders Promote/Demote with leading and term
	term    *leaderTerm // guarded by termMu; nil when not leading

	stopC     chan struct{}
	serving   sync.WaitGroup // the gRPC serve goroutine
	loops     sync.WaitGroup // the leadership loop and, through it, every term
	closeOnce sync.Once
	closeErr  error
}

// leaderTerm is one stretch of leadership; its context ends when it does.
type leaderTerm struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a node: it opens (or bootstraps) the Raft state in cfg.DataDir
// and serves gRPC (and HTTP, if configured) until Close.
func New(cfg Config) (*Node, error) {
	return newNode(cfg, nil)
}

// NewWithListener is New with an already bound gRPC listener (tests bind
// 127.0.0.1:0 first so that they know the address before bootstrapping).
func NewWithListener(cfg Config, lis net.Listener) (*Node, error) {
	cfg.GRPCAddr = lis.Addr().String()
	return newNode(cfg, lis)
}

func newNode(cfg Config, lis net.Listener) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if chaosBuild {
		cfg = chaosConfigure(cfg)
	}
	n = &Node{cfg: cfg, log: cfg.Logger, stopC: make(chan struct{}), notifyCh: make(chan bool, 1), group: make(chan *proposal, maxGroup), groupSlots: make(chan struct{}, maxInflight)}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	le, err := lessor.NewLessor(lessor.Config{MinTTL: cfg.MinTTL, MaxTTL: cfg.MaxTTL, RevokeRate: cfg.RevokeRate, Clock: cfg.Clock})
	if err != nil {
		return nil, err
	}
	n.lessor = le
	closers = append(closers, le.Stop)
	n.fsm, err = fsm.New(fsm.Config{Lessor: le, Logger: n.log.Named("fsm"), OnFatal: n.fatal})
	if err != nil {
		return nil, err
	}
	n.applied = newAppliedFSM(n.fsm)

	n.bolt, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.DataDir, "raft.db"),
		// The freelist grows as raft compacts its log; writing it on every
		// commit costs I/O on the hot path. bbolt rebuilds it on open
		// instead (Consul runs raft-boltdb the same way).
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return nil, fmt.Errorf("server: open raft log: %w", err)
	}
	closers = append(closers, func() { n.bolt.Close() })
	logs, err := raft.NewLogCache(1024, n.bolt)
	if err != nil {
		return nil, err
	}
	if chaosBuild {
		logs, _ = raft.NewLogCache(1024, chaosLogStore(n.bolt))
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, n.log.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("server: snapshot store: %w", err)
	}

	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, fmt.Errorf("server: listen grpc: %w", err)
		}
	}
	n.lis = lis
	closers = append(closers, func() { lis.Close() })
	n.trans, err = transport.New(transport.Config{LocalAddr: raft.ServerAddress(cfg.AdvertiseAddr), Logger: n.log.Named("transport")})
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { n.trans.Close() })
	n.grpc = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxRecvMsgSize(64<<20),
	)
	n.trans.Register(n.grpc)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.grpc, n.health)
	registerAPI(n.grpc, n)
	n.metrics = newMetrics(n)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = min(rc.CommitTimeout, cfg.HeartbeatTimeout/10)
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NotifyCh = n.notifyCh
	// BatchApplyCh stays off: with a buffered apply channel, a Barrier or
	// Apply queued as raft shuts down is never answered (those futures do
	// not watch raft's shutdown), and a waiter hangs for good. Unbuffered,
	// a future is either taken by raft's loop, which always answers it, or
	// refused with ErrRaftShutdown; the leader loop still group-commits every
	// proposer that is waiting.
	rc.BatchApplyCh = false
	rc.MaxAppendEntries = 512
	rc.Logger = n.log.Named("raft")
	n.raft, err = raft.NewRaft(rc, n.applied, logs, n.bolt, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("server: start raft: %w", err)
	}
	closers = append(closers, func() { n.raft.Shutdown().Error() })
	n.verifier.check = func() error { return n.raft.VerifyLeader().Error() }
	n.verifier.stopped = n.stopC
	n.renew = renewLease{dur: cfg.RenewLease, self: rc.LocalID, raft: n.raft, contact: n.trans.LastContact}
	if err := n.bootstrap(logs, snaps); err != nil {
		return nil, err
	}

	n.serving.Add(1)
	n.loops.Add(1)
	go func() {
		defer n.serving.Done()
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "error", err)
		}
	}()
	go n.leadershipLoop()
	n.loops.Add(1)
	go n.groupCommitLoop()
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if cfg.HTTPAddr != "" {
		if n.http, err = startHTTP(n); err != nil {
			n.Abort()
			return nil, err
		}
	}
	n.log.Info("node started", "grpc_addr", lis.Addr().String(), "advertise_addr", cfg.AdvertiseAddr, "data_dir", cfg.DataDir)
	return n, nil
}

// bootstrap starts a new cluster from cfg.InitialCluster when the data dir
// holds no Raft state; afterwards the flag is ignored.
func (n *Node) bootstrap(logs raft.LogStore, snaps raft.SnapshotStore) error {
	existing, err := raft.HasExistingState(logs, n.bolt, snaps)
	if err != nil {
		return fmt.Errorf("server: inspect raft state: %w", err)
	}
	if existing || len(n.cfg.InitialCluster) == 0 {
		return nil
	}
	var conf raft.Configuration
	member := false
	for _, p := range n.cfg.InitialCluster {
		addr := p.Address
		if p.Name == n.cfg.Name {
			member, addr = true, n.cfg.AdvertiseAddr
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Name), Address: raft.ServerAddress(addr)})
	}
	if !member {
		return fmt.Errorf("server: node %q is not in the initial cluster", n.cfg.Name)
	}
	n.log.Info("bootstrapping a new cluster", "members", len(conf.Servers))
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("server: bootstrap: %w", err)
	}
	return nil
}

// fatal stops the process: the FSM met an entry it cannot decode, and going
// on would let this replica diverge silently.
func (n *Node) fatal(err error) {
	n.log.Error("FATAL: cannot apply the replicated log; stopping so this replica does not diverge", "error", err)
	os.Exit(2)
}

// Addr is the node's gRPC address.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// HTTPAddr is the node's HTTP address, or "" if HTTP is disabled.
func (n *Node) HTTPAddr() string {
	if n.http == nil {
		return ""
	}
	return n.http.addr()
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Close stops the node gracefully: a leader first hands leadership to a
// follower, so clients see a short failover instead of an election timeout.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		if n.raft.State() == raft.Leader {
			f := n.raft.LeadershipTransfer()
			done := make(chan error, 1)
			go func() { done <- f.Error() }()
			select {
			case err := <-done:
				if err != nil {
					n.log.Warn("leadership transfer failed", "error", err)
				}
			case <-ctx.Done():
			}
		}
		n.closeErr = n.shutdown(ctx, true)
	})
	return n.closeErr
}

// Abort stops the node at once, without handing over leadership or draining
// connections, as a crash would. Tests and fault injection use it.
func (n *Node) Abort() {
	n.closeOnce.Do(func() { n.closeErr = n.shutdown(context.Background(), false) })
}

func (n *Node) shutdown(ctx context.Context, graceful bool) error {
	// The order matters. Raft answers every future while it runs, so our
	// own goroutines that wait on raft (the leadership term) end before raft
	// stops. The transport closes after raft, ending the streams peers keep
	// open to us, so that a graceful gRPC stop is not held up by them.
	close(n.stopC)
	n.health.Shutdown()
	if n.http != nil {
		n.http.stop(ctx, graceful)
	}
	n.loops.Wait()
	err := n.raft.Shutdown().Error()
	n.trans.Close()
	if graceful {
		stopped := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			n.grpc.Stop()
		}
	} else {
		n.grpc.Stop()
	}
	n.serving.Wait()
	n.fwd.close()
	n.lessor.Stop()
	if cerr := n.bolt.Close(); err == nil {
		err = cerr
	}
	n.log.Info("node stopped")
	return err
}
