package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// node is one server process of a cluster. Every node runs in its own OS
// process so that a SIGKILL is a real crash and VmRSS is the node's alone.
type node struct {
	name     string
	args     []string // argv[1:], kept so a killed node can be restarted on its data dir
	dataDir  string
	bin      string
	logPath  string
	clientEP string // gRPC address clients dial
	httpEP   string // leasecluster only: HTTP/JSON address
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
}

// start launches the node's process, appending its output to logPath.
func (n *node) start() error {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C aimed at the benchmark reaches the
	// nodes only through stopAll, which the benchmark controls.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.cmd = cmd
	n.done = make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(n.done)
	}()
	return nil
}

func (n *node) alive() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (n *node) pid() int { return n.cmd.Process.Pid }

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	if !n.alive() {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// stop asks for a clean shutdown and kills the node if it takes too long.
func (n *node) stop() {
	if !n.alive() {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.kill()
	}
}

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

// freePorts reserves n loopback ports by binding and releasing them; the
// window in which another process could take one is small enough here.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// newLCNodes prepares (but does not start) three `leasecluster serve` nodes
// with default settings except the log level (warn unless -lc-log-level) and, when the binary has
// it, --pprof so the leader can be profiled.
func newLCNodes(bin, dir string, pprof bool, logLevel string) ([]*node, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("lc%d=127.0.0.1:%d", i+1, ports[i]))
	}
	var nodes []*node
	for i := range 3 {
		name := fmt.Sprintf("lc%d", i+1)
		grpcAddr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[3+i])
		args := []string{"serve", "--name", name, "--data-dir", filepath.Join(dir, name),
			"--grpc-addr", grpcAddr, "--http-addr", httpAddr,
			"--initial-cluster", strings.Join(peers, ","), "--log-level", logLevel}
		if pprof {
			args = append(args, "--pprof")
		}
		nodes = append(nodes, &node{name: name, bin: bin, args: args, dataDir: filepath.Join(dir, name),
			logPath: filepath.Join(dir, name+".log"), clientEP: grpcAddr, httpEP: httpAddr})
	}
	return nodes, nil
}

// newEtcdNodes prepares three etcd nodes: the etcdnode program (./etcdnode),
// each an embed.Etcd with etcd's default settings.
func newEtcdNodes(bin, dir string) ([]*node, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[i]))
	}
	var nodes []*node
	for i := range 3 {
		name := fmt.Sprintf("e%d", i+1)
		clientAddr := fmt.Sprintf("127.0.0.1:%d", ports[3+i])
		args := []string{"-name", name, "-data-dir", filepath.Join(dir, name),
			"-peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[i]), "-client-url", "http://" + clientAddr,
			"-initial-cluster", strings.Join(peers, ",")}
		nodes = append(nodes, &node{name: name, bin: bin, args: args, dataDir: filepath.Join(dir, name),
			logPath: filepath.Join(dir, name+".log"), clientEP: clientAddr})
	}
	return nodes, nil
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
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
