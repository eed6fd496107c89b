package server

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/leasecluster/leasecluster/leasehttp"
	"github.com/leasecluster/leasecluster/lessor"
)

// Peer is one member of the initial cluster.
type Peer struct {
	Name    string
	Address string // gRPC address (host:port)
}

// ParseInitialCluster parses "name=host:port,name=host:port".
func ParseInitialCluster(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("server: initial cluster entry %q is not name=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("server: initial cluster entry %q: %w", part, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("server: initial cluster names %q twice", name)
		}
		seen[name] = true
		peers = append(peers, Peer{Name: name, Address: addr})
	}
	return peers, nil
}

// Config configures a node. Zero fields take the defaults documented on them.
type Config struct {
	Name          string // unique node name, also the Raft server ID
	DataDir       string // Raft log, stable store and snapshots
	GRPCAddr      string // listen address for peers and clients
	HTTPAddr      string // listen address of the HTTP/JSON API; empty disables it
	AdvertiseAddr string // gRPC address peers and clients dial; default GRPCAddr
	// InitialCluster bootstraps a new cluster when DataDir holds no Raft
	// state; it is ignored afterwards.
	InitialCluster []Peer
	// Join lists gRPC addresses (host:port) of members of an existing
	// cluster: the node asks it to be added (a non-voter, promoted once it
	// has caught up) until it is a voter, and never bootstraps, whatever
	// InitialCluster says (membership_join.go).
	Join []string
	// RaftLog is the raft log of a new data dir: RaftLogWAL (raft-wal, the
	// default for "") or RaftLogBoltDB. A data dir that has a log keeps it
	// (logstore.go); this only chooses for new ones.
	RaftLog string

	// HeartbeatTimeout is how long a follower waits without hearing from the
	// leader before it stands for election (raft waits 1 to 2 times this).
	// Default 500ms: a dead leader is noticed in 0.5 to 1 s.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration // default 1s
	LeaderLeaseTimeout time.Duration // default HeartbeatTimeout/2
	// Extend is added to every lease's expiry when a node becomes leader.
	// Default and minimum: ElectionTimeout.
	Extend time.Duration
	// RenewLease is how old the newest quorum of raft's contacts (heartbeats
	// and replication answered in this term) may be for a renewal to be
	// acknowledged without a new VerifyLeader round. The next leader's
	// Extend covers it, so it may be at most Extend/2. Default Extend/5;
	// negative disables it: every renewal then waits for its own round.
	RenewLease time.Duration
	// MinTTL is the shortest lease TTL. Default and minimum: 1.5 x ElectionTimeout.
	MinTTL time.Duration
	MaxTTL time.Duration // default lessor.DefaultMaxTTL
	// RevokeRate caps expiry revokes (leases/s). Default 100,000.
	RevokeRate        int
	SnapshotThreshold uint64        // log entries between snapshots; default 8192
	SnapshotInterval  time.Duration // how often to check; default 30s
	TrailingLogs      uint64        // entries kept after a snapshot; default 10240
	ApplyTimeout      time.Duration // how long a proposal may wait to be applied; default 10s

	// MaxLeases bounds the leases the cluster holds: a grant beyond it is
	// refused (RESOURCE_EXHAUSTED), decided by the leader before it proposes.
	// Default 10,000,000; negative: no bound.
	MaxLeases int
	// MaxItemsPerLease bounds the items one lease holds, likewise. Default
	// 10,000; negative: no bound.
	MaxItemsPerLease int

	// Pprof serves net/http/pprof under /debug/pprof/ on DebugAddr, never
	// on the HTTP address.
	Pprof bool
	// DebugAddr is the listen address of the profiles (plain HTTP) when
	// Pprof is on; empty: DefaultDebugAddr (127.0.0.1:6060). A non-loopback
	// address is served with a warning in the log.
	DebugAddr string
	// AllowedOrigins are the exact origins (https://ops.example.com) whose
	// browser pages may call the HTTP API; a request with another Origin
	// header gets 403. Empty: none (programs send no Origin and are served).
	AllowedOrigins []string
	// MetricsAddr is the listen address of a plain-HTTP listener serving
	// only /healthz, /readyz and /metrics (metricsaddr.go), for probes and
	// scrapers that present no client certificate; empty: none.
	MetricsAddr string

	Logger hclog.Logger // default: hclog to stderr, named after the node
	// Clock is the node's time source for the lessor and for the renew-lease
	// window (the transport's contact times and the renewal check against
	// them); nil means the real clock. The chaos build injects a skewed clock
	// through it. raft's own timers always run on the real clock.
	Clock lessor.Clock
	// Faults are fault-injection points; nil (the default) injects nothing.
	// Only the chaos build and tests set them.
	Faults *Faults
	// Security configures mutual TLS and lease ownership; zero: plaintext.
	Security Security
}

// The default quotas: generous, but finite, so that a runaway client fills
// an error log rather than the leader's memory.
const (
	DefaultMaxLeases        = 10_000_000
	DefaultMaxItemsPerLease = 10_000
)

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.GRPCAddr
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 500 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = time.Second
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout / 2
	}
	if c.Extend == 0 {
		c.Extend = c.ElectionTimeout
	}
	if c.RenewLease == 0 {
		c.RenewLease = c.Extend / 5
	}
	if c.MinTTL == 0 {
		c.MinTTL = c.ElectionTimeout * 3 / 2
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = lessor.DefaultMaxTTL
	}
	if c.RevokeRate == 0 {
		c.RevokeRate = lessor.DefaultRevokeRate
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.MaxLeases == 0 {
		c.MaxLeases = DefaultMaxLeases
	}
	if c.MaxItemsPerLease == 0 {
		c.MaxItemsPerLease = DefaultMaxItemsPerLease
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: c.Name, Level: hclog.Info})
	}
	return c
}

// Validate reports a configuration that cannot work or would break the
// safety rules (ARCHITECTURE.md rule 4: the minimum TTL exceeds an election).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("server: name is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("server: data dir is required"))
	}
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		errs = append(errs, fmt.Errorf("server: grpc addr %q: %w", c.GRPCAddr, err))
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("server: http addr %q: %w", c.HTTPAddr, err))
		}
	}
	if c.DebugAddr != "" {
		if _, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			errs = append(errs, fmt.Errorf("server: debug addr %q: %w", c.DebugAddr, err))
		}
	}
	for _, o := range c.AllowedOrigins {
		if err := leasehttp.CheckOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("server: %w", err))
		}
	}
	if c.Extend < c.ElectionTimeout {
		errs = append(errs, fmt.Errorf("server: extend %v is shorter than the election timeout %v", c.Extend, c.ElectionTimeout))
	}
	if c.RenewLease > c.Extend/2 {
		errs = append(errs, fmt.Errorf("server: renew lease %v is more than half the extension %v", c.RenewLease, c.Extend))
	}
	if c.MinTTL < c.ElectionTimeout*3/2 {
		errs = append(errs, fmt.Errorf("server: min TTL %v is below 1.5 x the election timeout %v", c.MinTTL, c.ElectionTimeout))
	}
	if c.MaxTTL < c.MinTTL {
		errs = append(errs, fmt.Errorf("server: max TTL %v is below min TTL %v", c.MaxTTL, c.MinTTL))
	}
	// Every replica applies a logged TTL as it is, up to a ceiling of the
	// replicated format; a leader must not propose more.
	if c.MaxTTL > lessor.TTLCeiling {
		errs = append(errs, fmt.Errorf("server: max TTL %v is above %v, the most a lease may have (lessor.TTLCeiling)", c.MaxTTL, lessor.TTLCeiling))
	}
	if c.RevokeRate < 0 {
		errs = append(errs, fmt.Errorf("server: revoke rate %d is negative", c.RevokeRate))
	}
	for _, p := range c.InitialCluster {
		if p.Name == "" || p.Address == "" {
			errs = append(errs, fmt.Errorf("server: initial cluster member %+v is incomplete", p))
		}
	}
	if err := checkRaftLog(c.RaftLog); err != nil {
		errs = append(errs, err)
	}
	if err := c.Security.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// now reads Clock, or the real clock.
func (c Config) now() time.Time {
	if c.Clock != nil {
		return c.Clock.Now()
	}
	return time.Now()
}
