package main_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

// decodeJSON parses one command's JSON output into v.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output %q is not the expected JSON: %v", out, err)
	}
}

// requireOneLineError checks the contract for failing commands: a non-zero
// exit, nothing on stdout, and exactly one "Error: ..." line on stderr.
func requireOneLineError(t *testing.T, res proctest.Result, what string) {
	t.Helper()
	if res.Code == 0 || res.Stdout != "" || !strings.HasPrefix(res.Stderr, "Error: ") ||
		strings.Count(res.Stderr, "\n") != 1 || !strings.HasSuffix(res.Stderr, "\n") {
		t.Errorf("%s: exit %d, stdout %q, stderr %q; want non-zero, no output, one Error: line", what, res.Code, res.Stdout, res.Stderr)
	}
}

// TestE2ECLI runs the client commands as separate processes against the
// cluster, in text and JSON output, with endpoints from --endpoints and from
// LEASECLUSTER_ENDPOINTS.
func TestE2ECLI(t *testing.T) {
	c := sharedCluster(t)
	eps := endpoints(c)
	run := func(args ...string) string { return cliOK(t, nil, append(args, "--endpoints", eps)...) }

	// grant, text and JSON.
	out := run("lease", "grant", "--ttl", "5s")
	var id int64
	if _, err := fmt.Sscanf(out, "lease %d granted with TTL 5s\n", &id); err != nil || id <= 0 {
		t.Fatalf("lease grant: output %q: %v", out, err)
	}
	var g struct {
		ID    string `json:"id"`
		TTLMs int64  `json:"ttl_ms"`
	}
	decodeJSON(t, run("lease", "grant", "--ttl", "5s", "-o", "json"), &g)
	jid, err := strconv.ParseInt(g.ID, 10, 64)
	if err != nil || jid <= 0 || g.TTLMs != 5000 {
		t.Fatalf("lease grant -o json: %+v, want a decimal-string id and ttl_ms 5000", g)
	}
	ids, jids := strconv.FormatInt(id, 10), g.ID

	if out := run("lease", "keepalive", ids, "--once"); out != "lease "+ids+" renewed, TTL 5s\n" {
		t.Errorf("lease keepalive --once: %q", out)
	}
	var k struct {
		ID    string `json:"id"`
		TTLMs int64  `json:"ttl_ms"`
	}
	if decodeJSON(t, run("lease", "keepalive", jids, "--once", "-o", "json"), &k); k.ID != jids || k.TTLMs != 5000 {
		t.Errorf("lease keepalive --once -o json: %+v", k)
	}

	// Items: attach in both modes; the JSON has the revision as a string.
	const key = "cli/e2e/lock"
	out = run("item", "attach", key, "--lease", ids, "--value", "holder-1")
	m := regexp.MustCompile(`^item "cli/e2e/lock" attached to lease ` + ids + `, revision (\d+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("item attach: %q", out)
	}
	rev := m[1]
	type item struct {
		Key      string `json:"key"`
		LeaseID  string `json:"lease_id"`
		Value    string `json:"value"`
		Revision string `json:"revision"`
	}
	var it item
	// Re-attaching to the holder keeps the revision and updates the value.
	decodeJSON(t, run("item", "attach", key, "--lease", ids, "--value", "holder-2", "-o", "json"), &it)
	if it != (item{key, ids, "holder-2", rev}) {
		t.Errorf("item attach -o json: %+v, want revision %s", it, rev)
	}
	if out := run("item", "get", key); out != fmt.Sprintf("item %q: lease %s, revision %s, value %q\n", key, ids, rev, "holder-2") {
		t.Errorf("item get: %q", out)
	}
	if decodeJSON(t, run("item", "get", key, "-o", "json"), &it); it != (item{key, ids, "holder-2", rev}) {
		t.Errorf("item get -o json: %+v", it)
	}
	res := cli(t, nil, "item", "attach", key, "--lease", jids, "--endpoints", eps)
	requireOneLineError(t, res, "item attach of a held key")

	// ttl and list.
	out = run("lease", "ttl", ids)
	if !regexp.MustCompile(`^lease ` + ids + `: granted TTL 5s, remaining [0-9.]+m?s, items: cli/e2e/lock\n$`).MatchString(out) {
		t.Errorf("lease ttl: %q", out)
	}
	var ttl struct {
		ID           string   `json:"id"`
		GrantedTTLMs int64    `json:"granted_ttl_ms"`
		RemainingMs  int64    `json:"remaining_ms"`
		Items        []string `json:"items"`
	}
	decodeJSON(t, run("lease", "ttl", jids, "-o", "json"), &ttl)
	if ttl.ID != jids || ttl.GrantedTTLMs != 5000 || ttl.RemainingMs <= 0 || ttl.RemainingMs > 5000 || ttl.Items == nil || len(ttl.Items) != 0 {
		t.Errorf("lease ttl -o json: %+v, want items [] (not null)", ttl)
	}
	out = run("lease", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !regexp.MustCompile(`^ID\s+GRANTED TTL\s+REMAINING$`).MatchString(lines[0]) ||
		!slices.ContainsFunc(lines[1:], func(l string) bool { return strings.HasPrefix(l, ids+" ") && strings.Contains(l, " 5s ") }) {
		t.Errorf("lease list: %q lacks a row for %s", out, ids)
	}
	var list struct {
		Leases []struct {
			ID string `json:"id"`
		} `json:"leases"`
	}
	decodeJSON(t, run("lease", "list", "-o", "json"), &list)
	var listed []string
	for _, l := range list.Leases {
		listed = append(listed, l.ID)
	}
	if !slices.Contains(listed, ids) || !slices.Contains(listed, jids) {
		t.Errorf("lease list -o json: %v lacks %s or %s", listed, ids, jids)
	}

	// detach, revoke.
	if out := run("item", "detach", key, "--lease", ids); out != fmt.Sprintf("item %q detached\n", key) {
		t.Errorf("item detach: %q", out)
	}
	requireOneLineError(t, cli(t, nil, "item", "get", key, "--endpoints", eps), "item get after detach")
	if out := run("lease", "revoke", ids); out != "lease "+ids+" revoked\n" {
		t.Errorf("lease revoke: %q", out)
	}
	if out := run("lease", "revoke", jids, "-o", "json"); out != "{}\n" {
		t.Errorf("lease revoke -o json: %q", out)
	}
	requireOneLineError(t, cli(t, nil, "lease", "ttl", ids, "--endpoints", eps), "lease ttl of a revoked lease")

	// cluster status: three rows, one leader, every row naming it.
	checkStatus := func(what string, env []string, args ...string) {
		t.Helper()
		var st struct {
			Nodes []struct {
				Endpoint, Name, Role, Leader, Error string
			} `json:"nodes"`
		}
		decodeJSON(t, cliOK(t, env, append([]string{"cluster", "status", "-o", "json"}, args...)...), &st)
		var got, leaders []string
		for _, n := range st.Nodes {
			got = append(got, n.Endpoint)
			if n.Role == "leader" {
				leaders = append(leaders, n.Name)
			}
		}
		if !slices.Equal(got, c.Endpoints()) || len(leaders) != 1 {
			t.Fatalf("%s: cluster status %+v, want the rows of %s and one leader", what, st.Nodes, eps)
		}
		for _, n := range st.Nodes {
			if n.Leader != leaders[0] || n.Error != "" {
				t.Errorf("%s: row %+v does not name leader %s", what, n, leaders[0])
			}
		}
	}
	checkStatus("--endpoints", nil, "--endpoints", eps)
	checkStatus("LEASECLUSTER_ENDPOINTS", []string{"LEASECLUSTER_ENDPOINTS=" + eps})
	checkStatus("--endpoints over LEASECLUSTER_ENDPOINTS", []string{"LEASECLUSTER_ENDPOINTS=127.0.0.1:1"}, "--endpoints", eps)

	out = run("cluster", "status")
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 4 || !strings.HasPrefix(rows[0], "ENDPOINT") || len(regexp.MustCompile(`(?m)\sleader\s`).FindAllString(out, -1)) != 1 {
		t.Errorf("cluster status: want a header, three rows and one leader:\n%s", out)
	}

	var mem struct {
		Members []struct {
			Name, Address string
			Voter, Leader bool
		} `json:"members"`
	}
	decodeJSON(t, run("cluster", "members", "-o", "json"), &mem)
	leaders := 0
	for i, x := range mem.Members {
		if i >= len(c.Members) || x.Name != c.Members[i].Name || x.Address != c.Members[i].GRPCAddr || !x.Voter {
			t.Errorf("cluster members: %+v", mem.Members)
			break
		}
		if x.Leader {
			leaders++
		}
	}
	if len(mem.Members) != 3 || leaders != 1 {
		t.Errorf("cluster members: %+v, want three voters and one leader", mem.Members)
	}

	// Errors: one line on stderr, non-zero exit; also from the environment.
	requireOneLineError(t, cli(t, nil, "lease", "revoke", "42", "--endpoints", eps), "lease revoke 42")
	requireOneLineError(t, cli(t, []string{"LEASECLUSTER_ENDPOINTS=" + eps}, "lease", "revoke", "42"), "lease revoke 42 (env endpoints)")
	requireOneLineError(t, cli(t, nil, "lease", "revoke", "x", "--endpoints", eps), "lease revoke x")
	requireOneLineError(t, cli(t, nil, "lease", "list", "--endpoints", "127.0.0.1:1", "--timeout", "1s"), "lease list with no reachable endpoint")
}

// TestE2EDev runs the README's first command, `leasecluster dev`, on free
// ports: it prints its endpoints, answers `cluster status` with a leader,
// and exits 0 within a few seconds of SIGINT, removing its temporary data.
func TestE2EDev(t *testing.T) {
	// dev takes base ports and uses the next two of each: six in a row, so
	// the gRPC and HTTP runs cannot overlap. A port taken since it was
	// picked makes dev exit; it then starts again on new ports.
	banner := regexp.MustCompile(`data in (\S+)\n\s+gRPC endpoints: (\S+)\n\s+HTTP endpoints: (\S+)\n`)
	var (
		p                  *proctest.Proc
		grpcPort, httpPort int
		m                  []string
	)
	err := proctest.RetryAddrInUse(func() error {
		var err error
		if grpcPort, err = proctest.FreePortRange(6); err != nil {
			return err
		}
		httpPort = grpcPort + 3
		if p, err = proctest.Start("dev", bin, nil, "dev", "--grpc-port", strconv.Itoa(grpcPort), "--http-port", strconv.Itoa(httpPort)); err != nil {
			return err
		}
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if m = banner.FindStringSubmatch(p.Stdout.String()); m != nil {
				return nil
			}
			select {
			case <-p.Done():
				if m = banner.FindStringSubmatch(p.Stdout.String()); m != nil {
					return nil
				}
				err := p.ExitError()
				var addrs []string
				for i := range 6 {
					addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", grpcPort+i))
				}
				if !errors.Is(err, proctest.ErrAddrInUse) && proctest.InUse(addrs...) {
					// It may have crashed without saying why.
					err = fmt.Errorf("%w: %w", proctest.ErrAddrInUse, err)
				}
				return fmt.Errorf("dev exited before printing its endpoints: %w", err)
			case <-deadline:
				p.Kill()
				return fmt.Errorf("dev printed no endpoints within 10s")
			case <-tick.C:
			}
		}
	})
	if p != nil {
		t.Cleanup(func() {
			p.Kill()
			if t.Failed() {
				t.Logf("dev stdout:\n%s\ndev stderr:\n%s", p.Stdout.String(), proctest.Tail(p.Stderr.String(), 30))
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	dataDir, grpcEps := m[1], m[2]
	wantEps := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", grpcPort, grpcPort+1, grpcPort+2)
	if grpcEps != wantEps || !strings.HasPrefix(m[3], fmt.Sprintf("127.0.0.1:%d,", httpPort)) {
		t.Errorf("dev endpoints: gRPC %s, HTTP %s; want gRPC %s and HTTP from port %d", grpcEps, m[3], wantEps, httpPort)
	}
	if !strings.Contains(p.Stdout.String(), "export LEASECLUSTER_ENDPOINTS="+grpcEps+"\n") {
		t.Errorf("dev banner does not suggest LEASECLUSTER_ENDPOINTS=%s:\n%s", grpcEps, p.Stdout.String())
	}

	// The printed endpoints answer, and one node leads.
	waitFor(t, 15*time.Second, func() error {
		res := cli(t, nil, "cluster", "status", "--endpoints", grpcEps)
		if res.Code != 0 {
			return fmt.Errorf("cluster status: exit %d: %s", res.Code, res.Stderr)
		}
		if n := len(regexp.MustCompile(`(?m)\sleader\s`).FindAllString(res.Stdout, -1)); n != 1 {
			return fmt.Errorf("cluster status shows %d leaders:\n%s", n, res.Stdout)
		}
		return nil
	})

	if err := p.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Wait's error is nil only for exit status 0.
	if err := p.Wait(5 * time.Second); err != nil {
		t.Fatalf("dev after SIGINT: %v (want exit status 0 within 5s)", err)
	}
	t.Logf("dev exited %v after SIGINT", time.Since(start).Round(time.Millisecond))
	if !strings.HasSuffix(p.Stdout.String(), "stopping...\n") {
		t.Errorf("dev stdout does not end with %q", "stopping...\n")
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("dev left its temporary data dir %s behind (stat: %v)", dataDir, err)
	}
}
