package chaos

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/leasecluster/leasecluster/internal/proccluster"
	"github.com/leasecluster/leasecluster/leasepb"
)

var (
	// ErrNoLeader is returned by Leader when no node reports itself leader.
	ErrNoLeader = errors.New("chaos: no leader")
	// ErrUnsupported is returned for a fault the cluster's mode cannot inject
	// (partitions in loopback mode).
	ErrUnsupported = errors.New("chaos: unsupported in this mode")
)

// ClusterConfig configures a cluster of node processes.
type ClusterConfig struct {
	Binary    string        // the chaos build of leasecluster
	Nodes     int           // 3 or 5
	Dir       string        // nodes/<name>/{data,node.log} go here
	Netns     bool          // root mode: a network namespace per node
	Election  time.Duration // --election-timeout
	Heartbeat time.Duration // --heartbeat-timeout
	Env       []string      // extra environment (LEASECLUSTER_CHAOS_BUG=...)
	// TLS: a PKI is made in Dir/tls (tls.go) and every node serves mutual
	// TLS with --client-cert-auth; every connection of the harness, its
	// HTTP controls included, dials with a client certificate.
	TLS  bool
	Logf func(format string, args ...any)
}

// NodeProc is one node process.
type NodeProc struct {
	Name     string
	Index    int
	GRPCAddr string
	HTTPAddr string
	m        *proccluster.Member
	conn     *grpc.ClientConn // the harness's own (with TLS: the admin certificate)
	wconn    *grpc.ClientConn // the workload's (with TLS: the workload certificate)

	mu     sync.Mutex // guards paused
	paused bool
}

// Cluster controls the node processes of one run.
type Cluster struct {
	cfg   ClusterConfig
	Nodes []*NodeProc
	procs *proccluster.Cluster
	net   *network // nil in loopback mode
	http  *http.Client
	pki   *pki   // nil without TLS
	sch   string // scheme of the HTTP controls: http or https
}

// StartCluster sets up the network (root mode), starts every node (through
// internal/proccluster, on free loopback ports unless in namespaces) and
// waits for a leader. On error everything already made is torn down.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &Cluster{cfg: cfg, http: &http.Client{Timeout: 2 * time.Second}, sch: "http"}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	pc := proccluster.Config{
		Binary: cfg.Binary, Nodes: cfg.Nodes, Prefix: "n", Env: cfg.Env,
		Flags:   []string{"--election-timeout", cfg.Election.String(), "--heartbeat-timeout", cfg.Heartbeat.String()},
		DataDir: func(name string) string { return filepath.Join(cfg.Dir, "nodes", name, "data") },
		LogFile: func(name string) string { return filepath.Join(cfg.Dir, "nodes", name, "node.log") },
	}
	if cfg.Netns {
		names := make([]string, cfg.Nodes)
		for i := range names {
			names[i] = fmt.Sprintf("n%d", i+1)
		}
		if c.net, err = newNetwork(ctx, names); err != nil {
			return nil, err
		}
		pc.Addrs = func(i int, _ string) (string, string) {
			return net.JoinHostPort(c.net.ip(i+1), "7001"), net.JoinHostPort(c.net.ip(i+1), "8001")
		}
		// ip netns exec execs the binary itself, so the PID held is the
		// node's: signals reach it directly.
		pc.Wrap = func(name string) []string { return []string{"ip", "netns", "exec", c.net.ns(name)} }
	}
	if cfg.TLS {
		if err := c.setupTLS(&pc); err != nil {
			return nil, err
		}
	}
	if c.procs, err = proccluster.Start(ctx, pc); err != nil {
		return nil, fmt.Errorf("chaos: start cluster: %w", err)
	}
	for _, m := range c.procs.Members {
		n := &NodeProc{Name: m.Name, Index: m.Index, GRPCAddr: m.GRPCAddr, HTTPAddr: m.HTTPAddr, m: m}
		c.Nodes = append(c.Nodes, n)
		if n.conn, err = dial(m.GRPCAddr, c.adminTLS()); err != nil {
			return nil, err
		}
		n.wconn = n.conn
		if c.pki != nil {
			if n.wconn, err = dial(m.GRPCAddr, c.pki.workload); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// setupTLS makes the run's PKI (after the network: a node's certificate
// names its namespace address) and adds the nodes' TLS flags and the
// harness's https to pc and c.
func (c *Cluster) setupTLS(pc *proccluster.Config) (err error) {
	names := make([]string, c.cfg.Nodes)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i+1)
	}
	c.pki, err = newPKI(pkiDir(c.cfg.Dir), names, func(i int) []string {
		if c.net == nil {
			return nil
		}
		return []string{c.net.ip(i + 1)}
	})
	if err != nil {
		return fmt.Errorf("chaos: certificates: %w", err)
	}
	pc.Flags = append(pc.Flags, c.pki.flags()...)
	pc.MemberFlags = c.pki.nodeFlags
	pc.TLS = c.pki.admin
	c.http.Transport = &http.Transport{TLSClientConfig: c.pki.admin}
	c.sch = "https"
	return nil
}

// adminTLS is the harness's own client configuration; nil without TLS.
func (c *Cluster) adminTLS() *tls.Config {
	if c.pki == nil {
		return nil
	}
	return c.pki.admin
}

// WorkloadTLS is the workload client's configuration; nil without TLS.
func (c *Cluster) WorkloadTLS() *tls.Config {
	if c.pki == nil {
		return nil
	}
	return c.pki.workload
}

// Endpoints are the nodes' gRPC addresses, for clients.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.GRPCAddr)
	}
	return out
}

// Partitionable reports whether partitions can be injected.
func (c *Cluster) Partitionable() bool { return c.net != nil }

// Running reports whether the node's process is alive.
func (n *NodeProc) Running() bool { return n.m.Running() }

// Kill sends SIGKILL to a node and waits for it to exit.
func (c *Cluster) Kill(n *NodeProc) {
	n.m.Kill()
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// Restart starts a killed node again; it recovers from its data dir.
func (c *Cluster) Restart(n *NodeProc) error {
	if n.Running() {
		return nil
	}
	return n.m.Start()
}

// Pause stops a node with SIGSTOP; Resume continues it.
func (c *Cluster) Pause(n *NodeProc) error { return c.signal(n, syscall.SIGSTOP, true) }

// Resume continues a paused node with SIGCONT.
func (c *Cluster) Resume(n *NodeProc) error { return c.signal(n, syscall.SIGCONT, false) }

func (c *Cluster) signal(n *NodeProc, sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m.Proc() == nil {
		return nil
	}
	n.paused = paused
	return n.m.Signal(sig)
}

// Status asks one node for its status.
func (c *Cluster) Status(ctx context.Context, n *NodeProc) (*leasepb.StatusResponse, error) {
	return c.status(ctx, n, false)
}

// StatusWithHash is Status with the hash of the node's replicated state,
// which costs the node a pass over its whole state.
func (c *Cluster) StatusWithHash(ctx context.Context, n *NodeProc) (*leasepb.StatusResponse, error) {
	return c.status(ctx, n, true)
}

func (c *Cluster) status(ctx context.Context, n *NodeProc, hash bool) (*leasepb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return leasepb.NewClusterClient(n.conn).Status(ctx, &leasepb.StatusRequest{StateHash: hash})
}

// Leader returns the node that reports itself leader with the highest term.
func (c *Cluster) Leader(ctx context.Context) (*NodeProc, error) {
	var best *NodeProc
	var term uint64
	for _, n := range c.Nodes {
		st, err := c.Status(ctx, n)
		if err == nil && st.Role == "leader" && st.Term >= term {
			best, term = n, st.Term
		}
	}
	if best == nil {
		return nil, ErrNoLeader
	}
	return best, nil
}

// ChaosPost calls one of a node's /chaos/ fault controls.
func (c *Cluster) ChaosPost(ctx context.Context, n *NodeProc, path string) error {
	return c.do(ctx, http.MethodPost, n, path, nil)
}

// do sends a request without a body to n and, if out is not nil, decodes
// the JSON answer into it.
func (c *Cluster) do(ctx context.Context, method string, n *NodeProc, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.sch+"://"+n.HTTPAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chaos: %s %s on %s: %s: %s", method, path, n.Name, resp.Status, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}

// Poke proposes a throwaway short lease on n, in the background, so that n
// (if it leads) writes to its Raft log now: a stalled disk then blocks its
// leader loop at once instead of at the workload's next write. The lease
// is not part of the history; it expires on its own.
func (c *Cluster) Poke(n *NodeProc) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = leasepb.NewLeasesClient(n.conn).Grant(ctx, &leasepb.GrantRequest{TtlMs: 1})
	}()
}

// Block applies partition rules: node i drops packets from in[i] and to out[i].
func (c *Cluster) Block(ctx context.Context, in, out map[int][]int) error {
	if c.net == nil {
		return ErrUnsupported
	}
	for i := range c.Nodes {
		if len(in[i]) == 0 && len(out[i]) == 0 {
			continue
		}
		if err := c.net.block(ctx, i, in[i], out[i]); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes every partition.
func (c *Cluster) Heal(ctx context.Context) error {
	if c.net == nil {
		return nil
	}
	return c.net.heal(ctx)
}

// HealAll undoes every fault: partitions, pauses, kills, clock (follower
// rate included) and fsync.
func (c *Cluster) HealAll(ctx context.Context) error {
	errs := []error{c.Heal(ctx)}
	for _, n := range c.Nodes {
		n.mu.Lock()
		paused := n.paused
		n.mu.Unlock()
		if paused {
			errs = append(errs, c.Resume(n))
		}
		if !n.Running() {
			errs = append(errs, c.Restart(n))
		}
	}
	for _, n := range c.Nodes {
		errs = append(errs, retry(ctx, func() error { return c.ChaosPost(ctx, n, "/chaos/clock?offset=0s&rate=1&follower_rate=1") }))
		errs = append(errs, retry(ctx, func() error { return c.ChaosPost(ctx, n, "/chaos/fsync?delay=0s") }))
	}
	return errors.Join(errs...)
}

// retry tries f for a few seconds: a node just restarted needs a moment
// before its HTTP server answers.
func retry(ctx context.Context, f func() error) error {
	var err error
	for range 50 {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

// Close kills every node, closes connections and removes the network.
// It is safe to call more than once.
func (c *Cluster) Close() error {
	for _, n := range c.Nodes {
		n.mu.Lock()
		paused := n.paused
		n.mu.Unlock()
		if paused {
			_ = c.Resume(n)
		}
		c.Kill(n)
		if n.wconn != nil && n.wconn != n.conn {
			n.wconn.Close()
		}
		if n.conn != nil {
			n.conn.Close()
		}
	}
	if c.procs != nil {
		c.procs.Close()
	}
	var err error
	if c.net != nil {
		err = c.net.close()
		if left := c.net.leftovers(); len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("%w: left behind: %s", ErrNetwork, strings.Join(left, "; ")))
		}
		c.net = nil
	}
	return err
}

// RemoveData deletes the nodes' data dirs (kept when a run fails).
func (c *Cluster) RemoveData() {
	for _, n := range c.Nodes {
		os.RemoveAll(n.m.DataDir)
	}
}
