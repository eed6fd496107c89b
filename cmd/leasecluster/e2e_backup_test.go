package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/internal/proccluster"
	"github.com/leasecluster/leasecluster/internal/proctest"
)

// TestE2EBackupRestore: `snapshot save` from a running cluster, `snapshot
// inspect` of the file, `snapshot restore` of it into three new data dirs
// (same state hash printed for each), `serve` on them: the new cluster holds
// the lease and the item with its revision, the lease has its TTL plus the
// grace, `cluster status` shows the same hash on every node, and a new
// attach gets a revision above the restored ones.
func TestE2EBackupRestore(t *testing.T) {
	src := startCluster(t)
	eps := endpoints(src)
	var lease struct{ ID string }
	decodeJSON(t, cliOK(t, nil, "lease", "grant", "--ttl", "60s", "-o", "json", "--endpoints", eps), &lease)
	var item struct{ Revision string }
	decodeJSON(t, cliOK(t, nil, "item", "attach", "backup/key", "--lease", lease.ID, "--value", "v1", "-o", "json", "--endpoints", eps), &item)

	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	out := cliOK(t, nil, "snapshot", "save", file, "--endpoints", eps)
	if !strings.HasPrefix(out, "saved "+file+": index ") || !strings.Contains(out, "1 leases, 1 items") {
		t.Fatalf("snapshot save: %q", out)
	}
	var sum struct{ Index, Leases, Items uint64 }
	decodeJSON(t, cliOK(t, nil, "snapshot", "inspect", file, "-o", "json"), &sum)
	rev, _ := strconv.ParseUint(item.Revision, 10, 64)
	if sum.Leases != 1 || sum.Items != 1 || sum.Index < rev {
		t.Fatalf("snapshot inspect: %+v; the item's revision %d", sum, rev)
	}
	// A failed save keeps nothing: an unreachable cluster.
	res := cli(t, nil, "snapshot", "save", filepath.Join(dir, "none.snap"), "--endpoints", "127.0.0.1:1", "--timeout", "1s")
	if _, err := os.Stat(filepath.Join(dir, "none.snap")); res.Code == 0 || err == nil {
		t.Fatalf("save from nowhere: exit %d, file: %v", res.Code, err)
	}

	ports, err := proctest.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("r%d=127.0.0.1:%d", i+1, ports[2*i]))
	}
	dataDir := func(name string) string { return filepath.Join(dir, "data", name) }
	var hash string
	for i := range 3 {
		name := fmt.Sprintf("r%d", i+1)
		var r struct {
			StateHash string
			Index     uint64
		}
		decodeJSON(t, cliOK(t, nil, "snapshot", "restore", file, "--data-dir", dataDir(name), "--name", name,
			"--initial-cluster", strings.Join(peers, ","), "--restore-grace", "30s", "-o", "json"), &r)
		if r.StateHash == "" || (hash != "" && r.StateHash != hash) || r.Index < sum.Index {
			t.Fatalf("restore of %s: %+v, others' hash %s", name, r, hash)
		}
		hash = r.StateHash
	}
	// Restoring over a seeded data dir is refused.
	if res := cli(t, nil, "snapshot", "restore", file, "--data-dir", dataDir("r1"), "--name", "r1",
		"--initial-cluster", strings.Join(peers, ",")); res.Code == 0 {
		t.Fatal("restore over a data dir succeeded")
	}
	src.Stop(5 * time.Second)

	start := time.Now()
	c, err := proccluster.Start(context.Background(), proccluster.Config{
		Binary: bin, Prefix: "r", Flags: fastTimeouts, StartTimeout: 20 * time.Second, DataDir: dataDir,
		Addrs: func(i int, _ string) (string, string) {
			return fmt.Sprintf("127.0.0.1:%d", ports[2*i]), fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("node logs:\n%s", logs(c))
		}
	})
	neps := endpoints(c)
	var got struct {
		LeaseID  string `json:"lease_id"`
		Value    string `json:"value"`
		Revision string `json:"revision"`
	}
	decodeJSON(t, cliOK(t, nil, "item", "get", "backup/key", "-o", "json", "--endpoints", neps), &got)
	if got.LeaseID != lease.ID || got.Value != "v1" || got.Revision != item.Revision {
		t.Fatalf("restored item %+v, want lease %s, revision %s", got, lease.ID, item.Revision)
	}
	var ttl struct {
		GrantedTTLMs int64 `json:"granted_ttl_ms"`
		RemainingMs  int64 `json:"remaining_ms"`
	}
	decodeJSON(t, cliOK(t, nil, "lease", "ttl", lease.ID, "-o", "json", "--endpoints", neps), &ttl)
	if want := (90*time.Second - time.Since(start)).Milliseconds(); ttl.GrantedTTLMs != 60000 || ttl.RemainingMs < want {
		t.Fatalf("restored lease: %+v, want TTL 60 s and at least %d ms left (TTL + 30 s grace)", ttl, want)
	}

	// cluster status: every node's hash, equal at equal indexes.
	err = proctest.Eventually(10*time.Second, 100*time.Millisecond, func() error {
		var st struct {
			Nodes []struct {
				Name      string `json:"name"`
				StateHash string `json:"state_hash"`
				HashIndex uint64 `json:"hash_index"`
			} `json:"nodes"`
		}
		r := cli(t, nil, "cluster", "status", "-o", "json", "--endpoints", neps)
		if r.Code != 0 {
			return fmt.Errorf("cluster status: exit %d: %s", r.Code, r.Stderr)
		}
		decodeJSON(t, r.Stdout, &st)
		for _, n := range st.Nodes {
			if n.StateHash == "" || n.StateHash != st.Nodes[0].StateHash || n.HashIndex != st.Nodes[0].HashIndex || n.HashIndex < sum.Index {
				return fmt.Errorf("cluster status: %+v", st.Nodes)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := cliOK(t, nil, "cluster", "status", "--endpoints", neps); !strings.Contains(out, "HASH INDEX") {
		t.Errorf("cluster status text has no hash column:\n%s", out)
	}

	var fresh struct{ Revision string }
	decodeJSON(t, cliOK(t, nil, "item", "attach", "backup/new", "--lease", lease.ID, "-o", "json", "--endpoints", neps), &fresh)
	if r, _ := strconv.ParseUint(fresh.Revision, 10, 64); r <= sum.Index || r <= rev {
		t.Fatalf("new attach got revision %d; backup index %d, restored revision %d", r, sum.Index, rev)
	}
}
