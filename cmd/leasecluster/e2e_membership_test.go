package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

// memberJSON is a member as `cluster members -o json` prints it.
type memberJSON struct {
	Name         string `json:"name"`
	Voter        bool   `json:"voter"`
	Leader       bool   `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	StatusError  string `json:"status_error"`
}

// membersOf reads `cluster members -o json`.
func membersOf(t *testing.T, eps string) []memberJSON {
	t.Helper()
	var out struct {
		Members []memberJSON `json:"members"`
	}
	if err := json.Unmarshal([]byte(cliOK(t, nil, "cluster", "members", "-o", "json", "--endpoints", eps)), &out); err != nil {
		t.Fatal(err)
	}
	return out.Members
}

// awaitMembers polls `cluster members` until ok accepts them.
func awaitMembers(t *testing.T, eps string, timeout time.Duration, ok func([]memberJSON) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ok(membersOf(t, eps))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}

// TestE2EMembership: a fourth process started with --join on an empty data
// dir becomes a voter and holds the lease granted before it came; cluster
// members shows every voter's applied index; transfer-leader, remove-member
// (the removed process reports role removed and logs it), and a removal
// refused for quorum.
func TestE2EMembership(t *testing.T) {
	c := startCluster(t)
	eps := endpoints(c)
	id := strings.Fields(cliOK(t, nil, "lease", "grant", "--ttl", "1h", "--endpoints", eps))[1] // "lease ID granted ..."

	ports, err := proctest.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	n4addr, n4http := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	start := time.Now()
	n4 := proctest.NewDaemon(proctest.Spec{Name: "n4", Bin: bin, Args: append([]string{"serve", "--name", "n4",
		"--data-dir", t.TempDir(), "--grpc-addr", n4addr, "--http-addr", n4http, "--join", eps}, fastTimeouts...)})
	if err := n4.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n4.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("n4 output:\n%s", n4.Output())
		}
	})
	all := eps + "," + n4addr
	awaitMembers(t, all, 30*time.Second, func(ms []memberJSON) error {
		if len(ms) != 4 {
			return fmt.Errorf("%d members", len(ms))
		}
		for _, m := range ms {
			if !m.Voter || m.AppliedIndex == 0 || m.StatusError != "" {
				return fmt.Errorf("member %+v is not a voter with an applied index", m)
			}
		}
		return nil
	})
	t.Logf("n4 joined in %v", time.Since(start))
	text := cliOK(t, nil, "cluster", "members", "--endpoints", all)
	if !strings.Contains(text, "APPLIED") || !strings.Contains(text, "n4") {
		t.Fatalf("cluster members:\n%s", text)
	}
	if out := cliOK(t, nil, "lease", "ttl", id, "--endpoints", n4addr); !strings.Contains(out, id) {
		t.Fatalf("lease ttl through n4: %s", out)
	}

	if out := cliOK(t, nil, "cluster", "transfer-leader", "n4", "--endpoints", all); !strings.Contains(out, "n4") {
		t.Fatalf("transfer-leader: %s", out)
	}
	cliOK(t, nil, "cluster", "remove-member", "n1", "--endpoints", all)
	n1 := c.Member("n1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		st, err := n1.Status(ctx)
		if err == nil && st.Role == "removed" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("n1 does not report removed: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	if out := n1.Output(); !strings.Contains(out, "removed from the cluster") {
		t.Fatalf("n1's log does not say it was removed:\n%s", out)
	}

	// n2, n3, n4 vote; with n3 down, removing n2 would leave n4 alone.
	c.Member("n3").Kill()
	res := cli(t, nil, "cluster", "remove-member", "n2", "--endpoints", all)
	if res.Code == 0 || !strings.Contains(res.Stderr, "quorum") {
		t.Fatalf("remove-member n2 with n3 down: exit %d, stderr %s", res.Code, res.Stderr)
	}
}
