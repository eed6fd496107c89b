package main_test

// End-to-end tests: they build the real leasecluster binary once and run it
// as separate processes on loopback (three `serve` nodes, `dev`, and the
// client commands), talking to them over HTTP, the client library and the
// CLI. This file holds TestMain and the cluster helpers; the tests are in
// the other e2e_*_test.go files.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

// bin is the leasecluster binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "leasecluster-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "leasecluster")
	// The test's working directory is the package directory, so "." is
	// cmd/leasecluster whatever directory `go test` was started from.
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building leasecluster:", err)
		return 1
	}
	defer proctest.KillAll() // whatever a failed or panicking test left running
	defer stopShared()
	return m.Run()
}

// Timing of the test clusters: short, so a failover takes about a second.
// The minimum TTL is then 1.5 x 500ms = 750ms.
var fastTimeouts = []string{"--election-timeout", "500ms", "--heartbeat-timeout", "500ms"}

// node is one `leasecluster serve` process and how to (re)start it.
type node struct {
	name, grpc, http, dataDir string
	viaEnv                    bool // configure name, addresses and data dir through LEASECLUSTER_* instead of flags
	proc                      *proctest.Proc
	logs                      []string // stderr of earlier incarnations, for failure reports
}

type cluster struct {
	nodes   []*node
	initial string // the --initial-cluster value
}

// newCluster picks free ports and data dirs for three nodes without starting
// them. Nodes whose index is in viaEnv are configured through the
// environment.
func newCluster(dataRoot string, viaEnv ...int) (*cluster, error) {
	c := &cluster{}
	var peers []string
	ports, err := proctest.FreePorts(6)
	if err != nil {
		return nil, err
	}
	for i := range 3 {
		n := &node{
			name:    fmt.Sprintf("n%d", i+1),
			grpc:    fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			http:    fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			dataDir: filepath.Join(dataRoot, fmt.Sprintf("n%d", i+1)),
		}
		for _, e := range viaEnv {
			n.viaEnv = n.viaEnv || e == i
		}
		c.nodes = append(c.nodes, n)
		peers = append(peers, n.name+"="+n.grpc)
	}
	c.initial = strings.Join(peers, ",")
	return c, nil
}

// start (re)starts n with the cluster's --initial-cluster, which a node with
// existing data must ignore.
func (c *cluster) start(n *node) error {
	if n.proc != nil {
		n.logs = append(n.logs, n.proc.Stderr.String())
	}
	args := append([]string{"serve"}, fastTimeouts...)
	var env []string
	if n.viaEnv {
		env = []string{
			"LEASECLUSTER_NAME=" + n.name,
			"LEASECLUSTER_DATA_DIR=" + n.dataDir,
			"LEASECLUSTER_GRPC_ADDR=" + n.grpc,
			"LEASECLUSTER_HTTP_ADDR=" + n.http,
			"LEASECLUSTER_INITIAL_CLUSTER=" + c.initial,
		}
	} else {
		args = append(args, "--name", n.name, "--data-dir", n.dataDir, "--grpc-addr", n.grpc,
			"--http-addr", n.http, "--initial-cluster", c.initial)
	}
	p, err := proctest.Start(n.name, bin, env, args...)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

func (c *cluster) startAll() error {
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			return err
		}
	}
	return nil
}

// stop ends every node gracefully (SIGTERM), killing stragglers.
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.proc != nil {
			wg.Go(func() { n.proc.Stop(5 * time.Second) })
		}
	}
	wg.Wait()
}

func (c *cluster) byName(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (c *cluster) endpoints() string {
	var eps []string
	for _, n := range c.nodes {
		eps = append(eps, n.grpc)
	}
	return strings.Join(eps, ",")
}

func (c *cluster) endpointList() []string { return strings.Split(c.endpoints(), ",") }

// logs returns the tail of every node's stderr, for failure messages.
func (c *cluster) logs() string {
	var b strings.Builder
	for _, n := range c.nodes {
		if n.proc == nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s (exited=%v) ---\n%s\n", n.name, n.proc.Exited(), proctest.Tail(n.proc.Stderr.String(), 25))
	}
	return b.String()
}

// status is GET /v1/status.
type status struct {
	Name         string `json:"name"`
	Role         string `json:"role"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func (n *node) status() (status, error) {
	var s status
	resp, err := httpc.Get("http://" + n.http + "/v1/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s: GET /v1/status: %s", n.name, resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (n *node) ready() error {
	resp, err := httpc.Get("http://" + n.http + "/readyz")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: /readyz %s: %s", n.name, resp.Status, body)
	}
	return nil
}

// waitLeader polls until every running node names the same running leader,
// that leader calls itself leader, and every running node is ready. It
// returns the leader.
func (c *cluster) waitLeader(timeout time.Duration) (*node, error) {
	var leader *node
	err := proctest.Eventually(timeout, 50*time.Millisecond, func() error {
		leader = nil
		name := ""
		for _, n := range c.nodes {
			if n.proc == nil || n.proc.Exited() {
				continue
			}
			s, err := n.status()
			if err != nil {
				return err
			}
			switch {
			case s.Leader == "":
				return fmt.Errorf("%s knows no leader", n.name)
			case name != "" && s.Leader != name:
				return fmt.Errorf("%s follows %s, another node follows %s", n.name, s.Leader, name)
			case s.Leader == n.name && s.Role != "leader":
				return fmt.Errorf("%s is named leader but its role is %q", n.name, s.Role)
			}
			name = s.Leader
			if err := n.ready(); err != nil {
				return err
			}
		}
		if leader = c.byName(name); leader == nil {
			return fmt.Errorf("unknown leader %q", name)
		}
		// Followers keep naming a killed leader until their heartbeat
		// timeout; that is not a leader to wait for.
		if leader.proc == nil || leader.proc.Exited() {
			return fmt.Errorf("leader %s is not running", name)
		}
		return nil
	})
	return leader, err
}

// follower returns some running node other than the leader.
func (c *cluster) follower(leader *node) *node {
	for _, n := range c.nodes {
		if n != leader && n.proc != nil && !n.proc.Exited() {
			return n
		}
	}
	return nil
}

// startCluster starts a cluster owned by one test, stopped (and its logs
// shown on failure) at the test's end.
func startCluster(t *testing.T, viaEnv ...int) *cluster {
	t.Helper()
	c, err := newCluster(t.TempDir(), viaEnv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("node logs:\n%s", c.logs())
		}
	})
	if err := c.startAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.waitLeader(15 * time.Second); err != nil {
		t.Fatalf("no leader: %v\n%s", err, c.logs())
	}
	return c
}

// The shared cluster serves the tests that do not kill nodes (HTTP, CLI,
// lock), which saves two cluster start-ups. It is started by the first test
// that asks for it and stopped by TestMain.
var shared struct {
	once sync.Once
	c    *cluster
	dir  string
	err  error
}

func sharedCluster(t *testing.T) *cluster {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "leasecluster-e2e-data-"); shared.err != nil {
			return
		}
		if shared.c, shared.err = newCluster(shared.dir); shared.err != nil {
			return
		}
		if shared.err = shared.c.startAll(); shared.err != nil {
			return
		}
		if _, err := shared.c.waitLeader(15 * time.Second); err != nil {
			shared.err = fmt.Errorf("no leader: %w\n%s", err, shared.c.logs())
		}
	})
	if shared.err != nil {
		t.Fatalf("shared cluster: %v", shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", shared.c.logs())
		}
	})
	return shared.c
}

func stopShared() {
	if shared.c != nil {
		shared.c.stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// cli runs the binary to completion with the given extra environment.
func cli(t *testing.T, env []string, args ...string) proctest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := proctest.Run(ctx, bin, env, args...)
	if err != nil {
		t.Fatalf("leasecluster %s: %v\nstderr: %s", strings.Join(args, " "), err, res.Stderr)
	}
	return res
}

// cliOK is cli that fails the test unless the command exits 0.
func cliOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	res := cli(t, env, args...)
	if res.Code != 0 {
		t.Fatalf("leasecluster %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
	}
	return res.Stdout
}
