package main_test

// End-to-end tests: they build the real leasecluster binary once and run it
// as separate processes on loopback (three `serve` nodes, `dev`, and the
// client commands), talking to them over HTTP, the client library and the
// CLI. This file holds TestMain and the cluster helpers; the tests are in
// the other e2e_*_test.go files.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/internal/proccluster"
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

// newCluster starts three nodes with data dirs under dataRoot and waits for
// a leader. Nodes whose index is in viaEnv are configured through the
// environment.
func newCluster(dataRoot string, viaEnv ...int) (*proccluster.Cluster, error) {
	return proccluster.Start(context.Background(), proccluster.Config{
		Binary: bin, Dir: dataRoot, Flags: fastTimeouts, ViaEnv: viaEnv, StartTimeout: 15 * time.Second,
	})
}

// waitLeader is Cluster.WaitLeader bounded by timeout.
func waitLeader(c *proccluster.Cluster, timeout time.Duration) (*proccluster.Member, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.WaitLeader(ctx)
}

// endpoints is the cluster's gRPC addresses as --endpoints takes them.
func endpoints(c *proccluster.Cluster) string { return strings.Join(c.Endpoints(), ",") }

// logs returns the tail of every node's output, for failure messages.
func logs(c *proccluster.Cluster) string { return c.Logs(25) }

// startCluster starts a cluster owned by one test, stopped (and its logs
// shown on failure) at the test's end.
func startCluster(t *testing.T, viaEnv ...int) *proccluster.Cluster {
	t.Helper()
	c, err := newCluster(t.TempDir(), viaEnv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("node logs:\n%s", logs(c))
		}
	})
	return c
}

// The shared cluster serves the tests that do not kill nodes (HTTP, CLI,
// lock), which saves two cluster start-ups. It is started by the first test
// that asks for it and stopped by TestMain.
var shared struct {
	once sync.Once
	c    *proccluster.Cluster
	dir  string
	err  error
}

func sharedCluster(t *testing.T) *proccluster.Cluster {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "leasecluster-e2e-data-"); shared.err != nil {
			return
		}
		shared.c, shared.err = newCluster(shared.dir)
	})
	if shared.err != nil {
		t.Fatalf("shared cluster: %v", shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", logs(shared.c))
		}
	})
	return shared.c
}

func stopShared() {
	if shared.c != nil {
		shared.c.Stop(5 * time.Second)
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
