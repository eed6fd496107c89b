// Package proccluster starts a cluster of real `leasecluster serve`
// processes for the end-to-end tests, the chaos harness and the benchmark:
// it picks free loopback ports (again, on empty data dirs, when one turns
// out to be taken), starts the members, waits for a leader, and kills,
// stops and restarts members. Processes themselves are internal/proctest's.
package proccluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

// freePorts is proctest.FreePorts; a test hands out a taken port through it.
var freePorts = proctest.FreePorts

// Config describes a cluster.
type Config struct {
	Binary string   // the leasecluster binary
	Nodes  int      // number of members; default 3
	Dir    string   // data dirs are Dir/<name> unless DataDir says otherwise
	Prefix string   // members are named Prefix1, Prefix2, ...; default "n"
	Flags  []string // extra flags of serve (timeouts, --log-level, --pprof)
	// MemberFlags, if set, gives more flags of one member, after Flags (a
	// certificate of its own).
	MemberFlags func(name string) []string
	// TLS, if set, means the members serve HTTP as https (started with
	// certificate flags): the leader wait's status and readiness reads dial
	// with it (a client certificate, the CA of the members' certificates).
	TLS *tls.Config
	Env []string // extra environment of every member; inherited LEASECLUSTER_* variables are dropped
	// ViaEnv lists the members (by index) configured through LEASECLUSTER_*
	// variables instead of flags: name, data dir, addresses and initial
	// cluster.
	ViaEnv []int
	// DataDir is a member's data dir; default Dir/<name>.
	DataDir func(name string) string
	// LogFile is the file a member's output is appended to (its directory
	// is made); by default the output is kept in memory.
	LogFile func(name string) string
	// Addrs gives member i's gRPC and HTTP addresses (the chaos harness: a
	// network namespace per node). By default every member gets two free
	// loopback ports.
	Addrs func(i int, name string) (grpcAddr, httpAddr string)
	// Wrap is a command prefix for a member (the chaos harness: ip netns
	// exec <ns>). Its program must exec the binary, so that signals reach
	// the node itself.
	Wrap func(name string) []string
	// StartTimeout bounds Start's wait for a leader; default 30s.
	StartTimeout time.Duration
}

// Member is one `leasecluster serve` process; the embedded Daemon kills,
// stops and restarts it (on its data dir, with the same command line: a
// node with data ignores --initial-cluster).
type Member struct {
	*proctest.Daemon
	Name     string
	Index    int
	GRPCAddr string
	HTTPAddr string
	DataDir  string
	LogFile  string // "" when the output is kept in memory

	httpc  *http.Client // status and readiness reads
	scheme string       // of the HTTP address: http, or https with Config.TLS
}

// Cluster is the members of one cluster.
type Cluster struct {
	Members []*Member
	cfg     Config
	initial string // the --initial-cluster value
}

// Start starts a new cluster and waits until it has a leader and every
// member is ready. The data dirs must not hold a cluster yet. On loopback
// ports a member that cannot bind its port (taken since it was picked)
// makes Start kill every member, empty the data dirs and try again on new
// ports. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "n"
	}
	if cfg.DataDir == nil {
		cfg.DataDir = func(name string) string { return filepath.Join(cfg.Dir, name) }
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	c := &Cluster{cfg: cfg}
	try := func() error {
		if err := c.setup(); err != nil {
			return err
		}
		err := c.StartAll()
		if err == nil {
			err = c.waitStarted(ctx)
		}
		if err != nil {
			c.Close()
			if errors.Is(err, proctest.ErrAddrInUse) {
				c.removeData()
			}
		}
		return err
	}
	var err error
	if cfg.Addrs != nil {
		err = try()
	} else {
		err = proctest.RetryAddrInUse(try)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// waitStarted is Start's wait for a leader, which fails at once when a
// member exits (with its exit error, which may wrap ErrAddrInUse) and shows
// the members' output when it times out.
func (c *Cluster) waitStarted(ctx context.Context) error {
	var ds []*proctest.Daemon
	for _, m := range c.Members {
		ds = append(ds, m.Daemon)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	ctx, stop := proctest.ExitContext(ctx, ds...)
	defer stop()
	_, err := c.WaitLeader(ctx)
	switch {
	case err == nil || errors.Is(err, proctest.ErrAddrInUse):
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w\n%s", err, c.Logs(25))
	default:
		// A member that died of a taken port may not have said so (a
		// crash while cleaning up): look at its ports.
		for _, m := range c.Members {
			if !m.Running() && proctest.InUse(m.GRPCAddr, m.HTTPAddr) {
				return fmt.Errorf("%w: %s's port is taken: %w", proctest.ErrAddrInUse, m.Name, err)
			}
		}
	}
	return err
}

// setup picks the addresses and makes the members, not started.
func (c *Cluster) setup() error {
	cfg := c.cfg
	addr := cfg.Addrs
	if addr == nil {
		ports, err := freePorts(2 * cfg.Nodes)
		if err != nil {
			return err
		}
		addr = func(i int, _ string) (string, string) {
			return fmt.Sprintf("127.0.0.1:%d", ports[2*i]), fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		}
	}
	c.Members = nil
	hc, scheme := httpc, "http"
	if cfg.TLS != nil {
		hc, scheme = &http.Client{Timeout: httpc.Timeout, Transport: &http.Transport{TLSClientConfig: cfg.TLS}}, "https"
	}
	var peers []string
	for i := range cfg.Nodes {
		m := &Member{Name: fmt.Sprintf("%s%d", cfg.Prefix, i+1), Index: i, httpc: hc, scheme: scheme}
		m.GRPCAddr, m.HTTPAddr = addr(i, m.Name)
		m.DataDir = cfg.DataDir(m.Name)
		if cfg.LogFile != nil {
			m.LogFile = cfg.LogFile(m.Name)
			if err := os.MkdirAll(filepath.Dir(m.LogFile), 0o750); err != nil {
				return err
			}
		}
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.GRPCAddr)
	}
	c.initial = strings.Join(peers, ",")
	for _, m := range c.Members {
		m.Daemon = proctest.NewDaemon(c.spec(m))
	}
	return nil
}

// spec is m's command line and environment.
func (c *Cluster) spec(m *Member) proctest.Spec {
	args := []string{"serve"}
	env := append([]string(nil), c.cfg.Env...)
	viaEnv := false
	for _, i := range c.cfg.ViaEnv {
		viaEnv = viaEnv || i == m.Index
	}
	if viaEnv {
		env = append(env,
			"LEASECLUSTER_NAME="+m.Name,
			"LEASECLUSTER_DATA_DIR="+m.DataDir,
			"LEASECLUSTER_GRPC_ADDR="+m.GRPCAddr,
			"LEASECLUSTER_HTTP_ADDR="+m.HTTPAddr,
			"LEASECLUSTER_INITIAL_CLUSTER="+c.initial,
		)
	} else {
		args = append(args, "--name", m.Name, "--data-dir", m.DataDir,
			"--grpc-addr", m.GRPCAddr, "--http-addr", m.HTTPAddr, "--initial-cluster", c.initial)
	}
	args = append(args, c.cfg.Flags...)
	if c.cfg.MemberFlags != nil {
		args = append(args, c.cfg.MemberFlags(m.Name)...)
	}
	bin := c.cfg.Binary
	if c.cfg.Wrap != nil {
		w := c.cfg.Wrap(m.Name)
		bin, args = w[0], append(append(w[1:len(w):len(w)], c.cfg.Binary), args...)
	}
	return proctest.Spec{Name: m.Name, Bin: bin, Args: args, Env: env, Log: m.LogFile}
}

// InitialCluster is the --initial-cluster value: name=gRPC address, ...
func (c *Cluster) InitialCluster() string { return c.initial }

// Endpoints are the members' gRPC addresses, for clients.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.GRPCAddr)
	}
	return out
}

// Member returns the member called name, or nil.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Follower returns some running member other than leader, or nil.
func (c *Cluster) Follower(leader *Member) *Member {
	for _, m := range c.Members {
		if m != leader && m.Running() {
			return m
		}
	}
	return nil
}

// StartAll starts every member that is not running (all of them after
// Stop: they recover from their data dirs).
func (c *Cluster) StartAll() error {
	for _, m := range c.Members {
		if m.Running() {
			continue
		}
		if err := m.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends every member gracefully (SIGTERM), killing those still running
// after grace.
func (c *Cluster) Stop(grace time.Duration) {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Go(func() { m.Stop(grace) })
	}
	wg.Wait()
}

// Close kills every member (SIGKILL). It is safe to call more than once.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// removeData deletes the members' data dirs.
func (c *Cluster) removeData() {
	for _, m := range c.Members {
		os.RemoveAll(m.DataDir)
	}
}

// Logs returns the last lines of every member's output, for failure
// messages.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	for _, m := range c.Members {
		p := m.Proc()
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s (exited=%v) ---\n%s\n", m.Name, p.Exited(), proctest.Tail(p.Output(), lines))
	}
	return b.String()
}
