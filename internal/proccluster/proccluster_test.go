package proccluster

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.KillAll()
	os.Exit(code)
}

// TestCluster starts a cluster whose first choice of ports includes one
// that is taken (n1's gRPC port, or n3's HTTP port: n3 fails after writing
// its data), then kills, restarts and stops members as the e2e tests,
// chaos and the benchmark do.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs leasecluster")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "leasecluster")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/leasecluster")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name  string
		taken int // index into the picked ports: 2i is member i's gRPC port, 2i+1 its HTTP port
	}{{"n1-grpc", 0}, {"n3-http", 5}} {
		t.Run(tc.name, func(t *testing.T) { testCluster(t, bin, tc.taken) })
	}
}

func testCluster(t *testing.T, bin string, takenIdx int) {
	dir := t.TempDir()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	picks := 0
	freePorts = func(n int) ([]int, error) {
		ports, err := proctest.FreePorts(n)
		if picks++; picks == 1 && err == nil {
			ports[takenIdx] = taken
		}
		return ports, err
	}
	t.Cleanup(func() { freePorts = proctest.FreePorts })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Config{
		Binary: bin, Dir: filepath.Join(dir, "data"), Flags: []string{"--election-timeout", "500ms", "--heartbeat-timeout", "500ms"},
		LogFile: func(name string) string { return filepath.Join(dir, "logs", name+".log") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if picks != 2 {
		t.Errorf("ports picked %d times, want 2 (the first set had a taken port)", picks)
	}
	m := c.Members[takenIdx/2]
	if log, _ := os.ReadFile(m.LogFile); strings.Count(string(log), "=== "+m.Name+": starting") != 2 {
		t.Errorf("%s's log shows no failed first start:\n%s", m.Name, log)
	}

	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader.Kill()
	next, err := c.WaitLeader(ctx)
	if err != nil || next == leader {
		t.Fatalf("after killing leader %s: leader %v, %v", leader.Name, next, err)
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := leader.Status(ctx); err != nil || s.Name != leader.Name || s.Leader == "" {
		t.Fatalf("restarted %s: status %+v, %v", leader.Name, s, err)
	}
	if f := c.Follower(next); f == nil || f == next {
		t.Errorf("Follower(%s) = %v", next.Name, f)
	}
	c.Stop(5 * time.Second)
	for _, m := range c.Members {
		if m.Running() {
			t.Errorf("%s running after Stop", m.Name)
		}
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("after a full restart: %v\n%s", err, c.Logs(20))
	}
}

// TestMemberFlagsAndTLS: a member's own flags follow the shared ones, and
// with TLS its status reads go to https.
func TestMemberFlagsAndTLS(t *testing.T) {
	c := &Cluster{cfg: Config{Binary: "leasecluster", Nodes: 2, Prefix: "n", Dir: t.TempDir(),
		Flags:       []string{"--client-cert-auth"},
		MemberFlags: func(name string) []string { return []string{"--cert-file", name + ".crt"} },
		TLS:         &tls.Config{},
		Addrs:       func(i int, _ string) (string, string) { return "127.0.0.1:1", "127.0.0.1:2" },
	}}
	c.cfg.DataDir = func(name string) string { return filepath.Join(c.cfg.Dir, name) }
	if err := c.setup(); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		args := strings.Join(c.spec(m).Args, " ")
		if !strings.HasSuffix(args, "--client-cert-auth --cert-file "+m.Name+".crt") {
			t.Errorf("%s: args %q", m.Name, args)
		}
		if m.scheme != "https" || m.httpc == httpc {
			t.Errorf("%s: scheme %q, shared plaintext client %v", m.Name, m.scheme, m.httpc == httpc)
		}
	}
}
