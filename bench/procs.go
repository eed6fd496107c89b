package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/leasecluster/leasecluster/internal/proccluster"
	"github.com/leasecluster/leasecluster/internal/proctest"
)

// node is one server process of a cluster. Every node runs in its own OS
// process so that a SIGKILL is a real crash and VmRSS is the node's alone.
// Processes are internal/proctest's: in their own process group (a Ctrl-C
// aimed at the benchmark reaches the nodes only through stopAll, which the
// benchmark controls), output appended to <name>.log in the system's work
// directory, started again on their data dirs after a kill.
type node struct {
	d        *proctest.Daemon
	name     string
	dataDir  string
	clientEP string // gRPC address clients dial
	httpEP   string // leasecluster only: HTTP/JSON address
	debugEP  string // leasecluster with --pprof: the profiles' plain-HTTP address (--debug-addr)
}

// start (re)starts the node's process.
func (n *node) start() error { return n.d.Start() }

func (n *node) alive() bool { return n.d.Running() }

func (n *node) pid() int { return n.d.Pid() }

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() { n.d.Kill() }

// stop asks for a clean shutdown and kills the node if it takes too long.
func (n *node) stop() { n.d.Stop(10 * time.Second) }

// rssKiB reads VmRSS from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// startLC starts three `leasecluster serve` nodes (internal/proccluster:
// free loopback ports, a leader waited for) with default settings except
// the log level (warn unless -lc-log-level) and, when the binary has it,
// --pprof so the leader can be profiled, and the extra flags.
func startLC(ctx context.Context, bin, dir string, pprof bool, logLevel string, t *benchTLS, extra ...string) ([]*node, error) {
	flags := append(append([]string{"--log-level", logLevel}, t.lcFlags()...), extra...)
	memberFlags := t.lcMemberFlags()
	debugAddrs := map[string]string{} // node name -> --debug-addr; written before the nodes start
	if pprof {
		// Profiles are served on a listener of their own (--debug-addr), one
		// free port per node: the nodes share this machine.
		flags = append(flags, "--pprof")
		tlsFlags := memberFlags
		memberFlags = func(name string) []string {
			addr, ok := debugAddrs[name]
			if !ok {
				if ports, err := proctest.FreePorts(1); err == nil {
					addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
					debugAddrs[name] = addr
				}
			}
			var out []string
			if tlsFlags != nil {
				out = tlsFlags(name)
			}
			if addr != "" {
				out = append(out, "--debug-addr", addr)
			}
			return out
		}
	}
	c, err := proccluster.Start(ctx, proccluster.Config{
		Binary: bin, Nodes: 3, Dir: dir, Prefix: "lc", Flags: flags, StartTimeout: time.Minute,
		MemberFlags: memberFlags, TLS: t.lcConfig(),
		LogFile: func(name string) string { return filepath.Join(dir, name+".log") },
	})
	if err != nil {
		return nil, err
	}
	var nodes []*node
	for _, m := range c.Members {
		nodes = append(nodes, &node{d: m.Daemon, name: m.Name, dataDir: m.DataDir, clientEP: m.GRPCAddr, httpEP: m.HTTPAddr, debugEP: debugAddrs[m.Name]})
	}
	return nodes, nil
}

// newEtcdNodes prepares three etcd nodes on free loopback ports: the
// etcdnode program (./etcdnode), each an embed.Etcd with etcd's default
// settings (and, with t, client and peer TLS on https URLs) but the extra
// flags of etcdnode.
func newEtcdNodes(bin, dir string, t *benchTLS, extra []string) ([]*node, error) {
	ports, err := proctest.FreePorts(6)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("e%d=%s://127.0.0.1:%d", i+1, t.scheme(), ports[i]))
	}
	var nodes []*node
	for i := range 3 {
		name := fmt.Sprintf("e%d", i+1)
		clientAddr := fmt.Sprintf("127.0.0.1:%d", ports[3+i])
		args := []string{"-name", name, "-data-dir", filepath.Join(dir, name),
			"-peer-url", fmt.Sprintf("%s://127.0.0.1:%d", t.scheme(), ports[i]), "-client-url", t.scheme() + "://" + clientAddr,
			"-initial-cluster", strings.Join(peers, ",")}
		args = append(append(args, t.etcdArgs(name)...), extra...)
		d := proctest.NewDaemon(proctest.Spec{Name: name, Bin: bin, Args: args, Log: filepath.Join(dir, name+".log")})
		nodes = append(nodes, &node{d: d, name: name, dataDir: filepath.Join(dir, name), clientEP: clientAddr})
	}
	return nodes, nil
}

// startEtcd starts three etcd nodes and waits until they are ready. A node
// that cannot bind its port (taken since it was picked) makes it start over
// on new ports with empty data dirs. extra are more flags of etcdnode.
func startEtcd(ctx context.Context, bin, dir string, t *benchTLS, extra ...string) ([]*node, *etcdSystem, error) {
	var nodes []*node
	var sys *etcdSystem
	err := proctest.RetryAddrInUse(func() (err error) {
		sys = nil
		if nodes, err = newEtcdNodes(bin, dir, t, extra); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				if sys != nil {
					sys.close()
				}
				for _, n := range nodes {
					n.kill()
					os.RemoveAll(n.dataDir)
				}
			}
		}()
		var ds []*proctest.Daemon
		for _, n := range nodes {
			if err := n.start(); err != nil {
				return fmt.Errorf("start %s: %w", n.name, err)
			}
			ds = append(ds, n.d)
		}
		if sys, err = newEtcdSystem(nodes, t); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		wctx, stop := proctest.ExitContext(wctx, ds...)
		defer stop()
		return waitReady(wctx, sys)
	})
	return nodes, sys, err
}

// waitFor polls cond every 50 ms until it returns nil or ctx ends.
func waitFor(ctx context.Context, what string, cond func(ctx context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := cond(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, context.Cause(ctx), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
