package main_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

// tlsInitFlags runs `tls init` and returns the printed flags: serve flags by
// peer, client flags by client.
func tlsInitFlags(t *testing.T, dir string, peers, clients []string) (serve, client map[string][]string) {
	t.Helper()
	out := cliOK(t, nil, "tls", "init", "--dir", dir, "--peers", strings.Join(peers, ","), "--clients", strings.Join(clients, ","))
	serve, client = map[string][]string{}, map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		name, flags, ok := strings.Cut(strings.TrimSpace(line), ": --")
		if !ok {
			continue
		}
		f := strings.Fields("--" + flags)
		if f[0] == "--cacert" {
			client[name] = f
		} else {
			serve[name] = f
		}
	}
	if len(serve) != len(peers) || len(client) != len(clients) {
		t.Fatalf("tls init printed flags for %d peers and %d clients, want %d and %d:\n%s", len(serve), len(client), len(peers), len(clients), out)
	}
	return serve, client
}

// startTLSCluster starts three serve processes with the printed TLS flags
// (https on HTTP, so proccluster's HTTP leader wait does not apply) and
// waits until the CLI, with clientFlags, sees one leader named by all.
func startTLSCluster(t *testing.T, serveFlags map[string][]string, clientFlags []string) (endpoints string) {
	t.Helper()
	data := t.TempDir()
	var daemons []*proctest.Daemon
	stop := func() {
		for _, d := range daemons {
			d.Stop(5 * time.Second)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range daemons {
				t.Logf("%s:\n%s", d.Name(), proctest.Tail(d.Output(), 25))
			}
		}
		stop()
	})
	err := proctest.RetryAddrInUse(func() error {
		stop()
		daemons = nil
		ports, err := proctest.FreePorts(6)
		if err != nil {
			return err
		}
		var grpcAddrs, initial []string
		for i := range 3 {
			a := fmt.Sprintf("127.0.0.1:%d", ports[2*i])
			grpcAddrs = append(grpcAddrs, a)
			initial = append(initial, fmt.Sprintf("n%d=%s", i+1, a))
		}
		for i := range 3 {
			name := fmt.Sprintf("n%d", i+1)
			args := []string{"serve", "--name", name, "--data-dir", filepath.Join(data, fmt.Sprintf("%s-%d", name, ports[0])),
				"--grpc-addr", grpcAddrs[i], "--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
				"--initial-cluster", strings.Join(initial, ",")}
			args = append(append(args, fastTimeouts...), serveFlags[name]...)
			d := proctest.NewDaemon(proctest.Spec{Name: name, Bin: bin, Args: args})
			if err := d.Start(); err != nil {
				return err
			}
			daemons = append(daemons, d)
		}
		endpoints = strings.Join(grpcAddrs, ",")
		return waitTLSLeader(t, daemons, append([]string{"cluster", "status", "-o", "json", "--timeout", "2s", "--endpoints", endpoints}, clientFlags...))
	})
	if err != nil {
		t.Fatalf("TLS cluster: %v", err)
	}
	return endpoints
}

// waitTLSLeader polls `cluster status` (args) until every node names the
// same leader; it returns at once, with its exit error (which may wrap
// proctest.ErrAddrInUse), when a node dies.
func waitTLSLeader(t *testing.T, daemons []*proctest.Daemon, args []string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, d := range daemons {
			if !d.Running() {
				return d.ExitError()
			}
		}
		err := tlsLeaderKnown(t, args)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader after 20s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tlsLeaderKnown is nil when `cluster status -o json` shows three nodes
// naming one leader.
func tlsLeaderKnown(t *testing.T, args []string) error {
	res, err := proctest.Run(t.Context(), bin, nil, args...)
	if err != nil {
		return err
	}
	var st struct {
		Nodes []struct{ Role, Leader, Error string }
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		return fmt.Errorf("cluster status: %q %q: %w", res.Stdout, res.Stderr, err)
	}
	leaders := map[string]bool{}
	for _, n := range st.Nodes {
		if n.Error != "" {
			return errors.New(n.Error)
		}
		leaders[n.Leader] = true
	}
	if len(st.Nodes) != 3 || len(leaders) != 1 || leaders[""] {
		return fmt.Errorf("no common leader yet: %s", res.Stdout)
	}
	return nil
}

// TestE2ETLS: `tls init`, three serve processes with the printed flags,
// then the CLI with a client's printed flags (and with the same through the
// environment) grants a lease and reads the cluster's status; without a
// certificate, or with the CA but no client certificate, it fails with one
// clear line.
func TestE2ETLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	serve, clients := tlsInitFlags(t, dir, []string{"n1", "n2", "n3"}, []string{"admin", "app1"})
	eps := startTLSCluster(t, serve, clients["admin"])

	out := cliOK(t, nil, append([]string{"lease", "grant", "--ttl", "5s", "--endpoints", eps}, clients["admin"]...)...)
	var id int64
	if _, err := fmt.Sscanf(out, "lease %d granted with TTL 5s\n", &id); err != nil || id <= 0 {
		t.Fatalf("lease grant over TLS: %q: %v", out, err)
	}
	out = cliOK(t, nil, append([]string{"cluster", "status", "--endpoints", eps}, clients["admin"]...)...)
	rows, leaders := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if rows++; len(f) < 6 || f[2] == "unreachable" {
			rows = -100
		}
		if len(f) > 2 && f[2] == "leader" {
			leaders++
		}
	}
	if rows != 3 || leaders != 1 {
		t.Fatalf("cluster status over TLS: want three nodes answering, one leading:\n%s", out)
	}

	// The same through LEASECLUSTER_CACERT, _CERT and _KEY, as app1.
	app := clients["app1"]
	env := []string{"LEASECLUSTER_CACERT=" + app[1], "LEASECLUSTER_CERT=" + app[3], "LEASECLUSTER_KEY=" + app[5], "LEASECLUSTER_ENDPOINTS=" + eps}
	if out := cliOK(t, env, "lease", "grant", "--ttl", "5s"); !strings.HasPrefix(out, "lease ") {
		t.Fatalf("lease grant with TLS from the environment: %q", out)
	}

	// No certificate at all: refused, with a hint at the TLS flags.
	res := cli(t, nil, "lease", "grant", "--timeout", "3s", "--endpoints", eps)
	requireOneLineError(t, res, "lease grant without TLS")
	t.Logf("without TLS: %s", res.Stderr)
	if !strings.Contains(res.Stderr, "--cacert") {
		t.Errorf("lease grant without TLS: %q does not point at --cacert", res.Stderr)
	}
	// The CA but no client certificate: refused (client-cert-auth).
	res = cli(t, nil, "lease", "grant", "--timeout", "3s", "--endpoints", eps, "--cacert", app[1])
	requireOneLineError(t, res, "lease grant without a client certificate")
	t.Logf("without a client certificate: %s", res.Stderr)
	if !strings.Contains(res.Stderr, "TLS failed") {
		t.Errorf("lease grant without a client certificate: %q does not say TLS failed", res.Stderr)
	}
}
