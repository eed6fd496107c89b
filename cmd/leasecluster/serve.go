package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/leasecluster/leasecluster/server"
)

// nodeFlags are the flags of one node, shared by serve and dev.
type nodeFlags struct {
	heartbeat, election, extend, minTTL time.Duration
	maxTTL                              time.Duration
	renewLease                          time.Duration
	revokeRate                          int
	maxLeases, maxItemsPerLease         int
	snapshotThreshold                   uint64
	logLevel                            string
	pprof                               bool
}

func (f *nodeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.DurationVar(&f.heartbeat, "heartbeat-timeout", 500*time.Millisecond, "how long a follower waits for the leader before standing for election")
	fl.DurationVar(&f.election, "election-timeout", time.Second, "Raft election timeout")
	fl.DurationVar(&f.extend, "extend", 0, "added to every lease's expiry when a node becomes leader (default: the election timeout)")
	fl.DurationVar(&f.renewLease, "renew-lease", 0, "how old a quorum's acceptance of the leader may be for renewals to be acknowledged without a new quorum round; at most half of --extend, negative disables (default: --extend/5)")
	fl.DurationVar(&f.minTTL, "min-ttl", 0, "shortest lease TTL; shorter requests are raised to it (default: 1.5 x the election timeout)")
	fl.DurationVar(&f.maxTTL, "max-ttl", 0, "longest lease TTL; longer requests are refused (default 30 days, at most 10 years)")
	fl.IntVar(&f.revokeRate, "revoke-rate", 100_000, "most expired leases revoked per second")
	fl.IntVar(&f.maxLeases, "max-leases", server.DefaultMaxLeases, "most leases the cluster holds; a grant beyond it is refused (RESOURCE_EXHAUSTED, HTTP 429); negative: no bound")
	fl.IntVar(&f.maxItemsPerLease, "max-items-per-lease", server.DefaultMaxItemsPerLease, "most items one lease holds; an attach beyond it is refused likewise; negative: no bound")
	fl.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 8192, "Raft log entries between snapshots")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fl.BoolVar(&f.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on --debug-addr (plain HTTP, loopback by default), never on the HTTP address")
}

func (f *nodeFlags) apply(cfg *server.Config) {
	cfg.HeartbeatTimeout = f.heartbeat
	cfg.ElectionTimeout = f.election
	cfg.Extend = f.extend
	cfg.RenewLease = f.renewLease
	cfg.MinTTL = f.minTTL
	cfg.MaxTTL = f.maxTTL
	cfg.RevokeRate = f.revokeRate
	cfg.MaxLeases = f.maxLeases
	cfg.MaxItemsPerLease = f.maxItemsPerLease
	cfg.SnapshotThreshold = f.snapshotThreshold
	cfg.Pprof = f.pprof
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.Name, Level: hclog.LevelFromString(f.logLevel), Output: os.Stderr})
	installFaults(cfg)
}

func newServeCmd() *cobra.Command {
	var (
		cfg            server.Config
		initialCluster string
		join           string
		nf             nodeFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one node",
		Long: `Run one leasecluster node. With an empty data dir and --initial-cluster it
bootstraps a new cluster; afterwards it recovers its state from the data dir
and --initial-cluster is ignored.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			peers, err := server.ParseInitialCluster(initialCluster)
			if err != nil {
				return err
			}
			cfg.InitialCluster = peers
			if cfg.Join, err = server.ParseJoin(join); err != nil {
				return err
			}
			nf.apply(&cfg)
			n, err := server.New(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "leasecluster node %s serving gRPC on %s", n.Name(), n.Addr())
			if a := n.HTTPAddr(); a != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), " and HTTP on %s", a)
			}
			fmt.Fprintln(cmd.ErrOrStderr())
			waitForSignal()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return n.Close(ctx)
		},
	}
	fl := cmd.Flags()
	host, _ := os.Hostname()
	fl.StringVar(&cfg.Name, "name", host, "unique node name (the Raft server ID)")
	fl.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log and snapshots (required)")
	fl.StringVar(&cfg.RaftLog, "raft-log", server.RaftLogWAL, "raft log of a new data dir: wal (hashicorp/raft-wal) or boltdb (raft-boltdb); a data dir that has a log keeps it")
	fl.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7001", "gRPC listen address, for peers and clients")
	fl.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8001", "HTTP/JSON listen address (empty disables)")
	fl.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "plain-HTTP listen address serving only /healthz, /readyz and /metrics, without TLS or client certificates, for probes and Prometheus (empty disables)")
	fl.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "gRPC address peers and clients dial (default: --grpc-addr)")
	fl.StringVar(&initialCluster, "initial-cluster", "", "name=host:port,... of the first members; bootstraps a new cluster when the data dir is empty")
	fl.StringVar(&join, "join", "", "host:port,... of members of an existing cluster: ask it to add this node (a non-voter, promoted once caught up; with an empty data dir it replaces a member of the same name); never bootstraps")
	sec := &cfg.Security
	fl.StringVar(&sec.CertFile, "cert-file", "", "this node's TLS certificate (PEM), served on both listeners and presented to peers; re-read when it changes; unset: plaintext")
	fl.StringVar(&sec.KeyFile, "key-file", "", "the key of --cert-file (PEM)")
	fl.StringVar(&sec.TrustedCAFile, "trusted-ca-file", "", "the CA that signs client certificates (PEM)")
	fl.BoolVar(&sec.ClientCertAuth, "client-cert-auth", false, "require every client to present a certificate signed by --trusted-ca-file")
	fl.StringVar(&sec.PeerTrustedCAFile, "peer-trusted-ca-file", "", "the CA that signs peer certificates, the only ones that may send Raft traffic (default: --trusted-ca-file)")
	fl.StringVar(&sec.PeerCertAllowedCN, "peer-cert-allowed-cn", "", "the only CN a peer certificate may have (optional)")
	fl.StringSliceVar(&sec.AdminCNs, "admin-cn", nil, "certificate CNs that may act on every lease, whoever granted it (comma-separated)")
	nf.register(cmd)
	// Beside --pprof (nodeFlags): serve only, one address per process.
	fl.StringVar(&cfg.DebugAddr, "debug-addr", server.DefaultDebugAddr, "where --pprof serves Go profiles (/debug/pprof/, plain HTTP; a non-loopback address is logged as a warning); never on the HTTP address")
	fl.StringSliceVar(&cfg.AllowedOrigins, "allowed-origins", nil, "exact origins (https://ops.example.com, comma-separated) whose browser pages may call the HTTP API; any other request with an Origin header gets 403 (default: none; curl and programs send no Origin)")
	return cmd
}

// waitForSignal blocks until SIGINT or SIGTERM.
func waitForSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
	signal.Stop(ch)
}

// signalContext is ctx, cancelled on SIGINT or SIGTERM.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
}
