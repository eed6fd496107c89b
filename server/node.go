// Package server is one leasecluster node: Raft (raft-boltdb v2 behind a
// LogCache, a FileSnapshotStore, the gRPC transport), the FSM wrapping the
// lessor, and the jobs built on them, each a type of its own: leadership
// (terms, Promote and Demote, the leader-only loops), the proposer (the one
// path into raft.Apply, with group commit), the renewer (renewals and their
// leadership confirmation), the reader (linearizable reads), leaseOps (the
// mutations) and clusterInfo (status and members); the gRPC and HTTP
// adapters are thin. See ARCHITECTURE.md ("server/ by job") and DESIGN.md.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/transport"
)

// Node is one member of a leasecluster. It assembles the parts, starts and
// stops them in order, and otherwise leaves the work to its jobs.
type Node struct {
	cfg     Config
	log     hclog.Logger
	lessor  lessor.Lessor
	fsm     *fsm.FSM
	applied *appliedFSM
	rs      raftStack
	grpc    *grpc.Server
	health  *health.Server
	lis     net.Listener
	http    *httpServer
	debug   *debugServer // pprof's own listener; nil unless Pprof
	metrics *metrics
	tls     *certs.Node       // nil: plaintext
	dial    []grpc.DialOption // how this node dials its peers (credentials)

	metricsSrv *metricsServer // the plain probes and /metrics listener; nil unless MetricsAddr

	lead     *leadership
	loops    *leaderLoops
	proposer *proposer
	renewer  *renewer
	reader   *reader
	ops      *leaseOps
	info     *clusterInfo
	members  *membership
	fwd      *forwarder

	stopC     chan struct{}
	serving   sync.WaitGroup // the gRPC serve goroutine
	running   sync.WaitGroup // the leadership loop (and through it every term) and the committer
	closeOnce sync.Once
	closeErr  error
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

func newNode(cfg Config, lis net.Listener) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Faults != nil && cfg.Faults.Extend > 0 {
		cfg.Extend = cfg.Faults.Extend // a broken variant: after validation on purpose
	}
	// n is not the named result: a failed start returns nil, and the
	// closers below must still reach the parts that were opened.
	n := &Node{cfg: cfg, log: cfg.Logger, stopC: make(chan struct{})}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	if n.tls, err = cfg.Security.load(); err != nil {
		return nil, err
	}
	n.dial = n.peerDialOptions()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	le, err := lessor.NewLessor(lessor.Config{MinTTL: cfg.MinTTL, MaxTTL: cfg.MaxTTL, RevokeRate: cfg.RevokeRate, Clock: cfg.Clock})
	if err != nil {
		return nil, err
	}
	n.lessor = le
	closers = append(closers, le.Stop)
	n.fsm, err = fsm.New(fsm.Config{Lessor: le, Logger: n.log.Named("fsm"), OnFatal: n.fatal,
		BeforeExpiryRevoke: cfg.Faults.beforeExpiryRevoke()})
	if err != nil {
		return nil, err
	}
	n.applied = newAppliedFSM(n.fsm)
	if cfg.Faults != nil {
		n.applied.rewrite = cfg.Faults.ApplyEntry
	}
	if err := n.rs.openStores(cfg); err != nil {
		if n.rs.bolt != nil {
			n.rs.bolt.Close()
		}
		return nil, err
	}
	closers = append(closers, func() { n.rs.bolt.Close() })

	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, fmt.Errorf("server: listen grpc: %w", err)
		}
	}
	n.lis = lis
	closers = append(closers, func() { lis.Close() })
	n.rs.trans, err = transport.New(transport.Config{LocalAddr: raft.ServerAddress(cfg.AdvertiseAddr), Logger: n.log.Named("transport"), DialOptions: n.dial, DialStream: n.dialPeerStream, Now: cfg.now,
		VoteGate: func() error { return n.members.voteGate() }})
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { n.rs.trans.Close() })
	n.metrics = newMetrics(n) // before the gRPC server: its interceptors count into it
	n.grpc = grpc.NewServer(n.grpcServerOptions()...)
	n.rs.trans.Register(n.grpc)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.grpc, n.health)
	registerAPI(n.grpc, n)

	notify := make(chan bool, 1)
	rc := raftConfig(cfg, notify)
	n.rs.raft, err = raft.NewRaft(rc, n.applied, n.rs.logs, n.rs.bolt, n.rs.snaps, n.rs.trans)
	if err != nil {
		return nil, fmt.Errorf("server: start raft: %w", err)
	}
	closers = append(closers, func() { n.rs.raft.Shutdown().Error() })
	n.assemble(notify, rc.LocalID)
	existing, err := n.joinOrBootstrap()
	if err != nil {
		return nil, err
	}

	n.serving.Add(1)
	go func() {
		defer n.serving.Done()
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "error", err)
		}
	}()
	n.running.Go(func() { n.lead.run(n.stopC) })
	n.running.Go(n.proposer.commitLoop)
	n.startMembership(existing)
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	closers = nil // running now: from here on, Abort stops every part
	if cfg.HTTPAddr != "" {
		if n.http, err = startHTTP(n); err != nil {
			n.Abort()
			return nil, err
		}
	}
	if cfg.Pprof {
		n.debug = startDebug(n)
	}
	if n.metricsSrv, err = startMetricsServer(n); err != nil {
		n.Abort()
		return nil, err
	}
	n.log.Info("node started", "grpc_addr", lis.Addr().String(), "advertise_addr", cfg.AdvertiseAddr, "data_dir", cfg.DataDir)
	return n, nil
}

// assemble builds the jobs on the raft stack, the lessor and the FSM.
func (n *Node) assemble(notify chan bool, self raft.ServerID) {
	cfg, rs := n.cfg, &n.rs
	n.lead = &leadership{rs: rs, lessor: n.lessor, log: n.log, metrics: n.metrics, notify: notify,
		extend: cfg.Extend, barrier: cfg.ApplyTimeout,
		onStepDown: func() { n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING) }}
	leading := n.lead.isLeading
	n.proposer = newProposer(rs, leading, cfg.ApplyTimeout, n.metrics, n.stopC)
	n.loops = &leaderLoops{lessor: n.lessor, proposer: n.proposer, log: n.log, metrics: n.metrics, faults: cfg.Faults}
	n.lead.duringTerm = n.loops.run
	v := &verifier{check: func() error { return rs.raft.VerifyLeader().Error() }, stopped: n.stopC}
	n.renewer = &renewer{rs: rs, lessor: n.lessor, proposer: n.proposer, leading: leading, verifier: v,
		lease:   renewLease{dur: cfg.RenewLease, self: self, raft: rs.raft, contact: rs.trans.LastContact},
		metrics: n.metrics, faults: cfg.Faults, owners: cfg.Security.Enabled(), now: cfg.now}
	n.reader = &reader{rs: rs, leading: leading, verifier: v, applied: n.applied, lessor: n.lessor, fsm: n.fsm, faults: cfg.Faults}
	n.ops = &leaseOps{proposer: n.proposer, lessor: n.lessor, fsm: n.fsm, minTTL: cfg.MinTTL, maxTTL: cfg.MaxTTL,
		maxLeases: cfg.MaxLeases, maxItems: cfg.MaxItemsPerLease, metrics: n.metrics, faults: cfg.Faults}
	n.members = n.newMembership(self, leading)
	n.info = &clusterInfo{rs: rs, name: cfg.Name, leading: leading, fsm: n.fsm, members: n.members}
	n.fwd = &forwarder{rs: rs, name: cfg.Name, conn: leaderConn{dial: n.dial}}
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

// IsLeader reports whether this node leads and serves as leader.
func (n *Node) IsLeader() bool { return n.lead.isLeading() }

// TransferLeadership hands leadership to another voter, for maintenance.
func (n *Node) TransferLeadership() error { return n.info.transferLeadership() }

// Close stops the node gracefully: a leader first hands leadership to a
// follower, so clients see a short failover instead of an election timeout.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		if n.rs.raft.State() == raft.Leader {
			f := n.rs.raft.LeadershipTransfer()
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
	n.debug.stop()
	n.metricsSrv.stop(ctx, graceful)
	n.running.Wait()
	err := n.rs.raft.Shutdown().Error()
	n.rs.trans.Close()
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
	n.fwd.conn.close()
	n.lessor.Stop()
	if cerr := n.rs.bolt.Close(); err == nil {
		err = cerr
	}
	n.log.Info("node stopped")
	return err
}
