package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/internal/proccluster"
	"github.com/leasecluster/leasecluster/leasepb"
)

// ackedWrites is what a write load was told had succeeded.
type ackedWrites struct {
	mu     sync.Mutex
	leases map[int64]bool
	items  map[string]int64 // key -> the lease it was attached to
	failed int              // operations that ended in an error (outcome unknown)
}

// writeLoad grants leases and attaches an item to every fourth, from
// workers goroutines through the client library, until stop is closed.
func writeLoad(cl *client.Client, workers int, stop <-chan struct{}) (*ackedWrites, *sync.WaitGroup) {
	acked := &ackedWrites{leases: map[int64]bool{}, items: map[string]int64{}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				l, err := cl.Grant(ctx, 10*time.Minute)
				var key string
				if err == nil && i%4 == 0 {
					key = fmt.Sprintf("crash/%d/%d", w, i)
					_, err = cl.Attach(ctx, l.ID, key, "v")
				}
				cancel()
				acked.mu.Lock()
				if l.ID != 0 {
					acked.leases[l.ID] = true
				}
				if err != nil {
					acked.failed++
				} else if key != "" {
					acked.items[key] = l.ID
				}
				acked.mu.Unlock()
			}
		})
	}
	return acked, &wg
}

// rawStatus is a member's GET /v1/status as a map, to read fields that
// proccluster.Status does not name.
func rawStatus(ctx context.Context, t *testing.T, m *proccluster.Member) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st map[string]any
	err := eventuallyCtx(ctx, func() error {
		res := cli(t, nil, "cluster", "status", "--endpoints", m.GRPCAddr, "-o", "json")
		var out struct{ Nodes []map[string]any }
		if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil || len(out.Nodes) != 1 {
			return fmt.Errorf("cluster status: %q: %v", res.Stdout, err)
		}
		st = out.Nodes[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func eventuallyCtx(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// hashes asks every member for its applied index and state hash over gRPC.
func hashes(ctx context.Context, c *proccluster.Cluster) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range c.Members {
		cc, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := leasepb.NewClusterClient(cc).Status(rctx, &leasepb.StatusRequest{StateHash: true})
		cancel()
		cc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		out[m.Name] = fmt.Sprintf("index %d hash %.12s", s.GetAppliedIndex(), s.GetStateHash())
	}
	return out, nil
}

// TestE2ECrashDuringWritesLosesNothing: new data dirs keep raft's log in
// raft-wal (the status says so). Under a write-heavy load, the leader is
// SIGKILLed and restarted, then all three nodes at once: every grant and
// attach that was acknowledged is still there, and the restarted nodes end
// with the same applied index and state hash as their peers.
func TestE2ECrashDuringWritesLosesNothing(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, m := range c.Members {
		if fi, err := os.Stat(filepath.Join(m.DataDir, "wal")); err != nil || !fi.IsDir() {
			t.Fatalf("%s: a new data dir without wal/: %v", m.Name, err)
		}
		if st := rawStatus(ctx, t, m); st["raft_log"] != "wal" {
			t.Fatalf("%s: cluster status %v, want raft_log wal", m.Name, st)
		}
	}
	cl, err := client.New(ctx, c.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	stop := make(chan struct{})
	acked, load := writeLoad(cl, 16, stop)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			load.Wait()
		}
	}
	defer stopLoad()
	count := func() int {
		acked.mu.Lock()
		defer acked.mu.Unlock()
		return len(acked.leases)
	}
	waitMore := func(n int) {
		t.Helper()
		if err := eventuallyCtx(ctx, func() error {
			if got := count(); got < n {
				return fmt.Errorf("%d leases acknowledged, waiting for %d", got, n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	waitMore(300)
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader.Kill() // SIGKILL in the middle of writes
	waitMore(count() + 300)
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	waitMore(count() + 300)
	c.Close() // every node at once
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitMore(count() + 300)
	stopLoad()
	t.Logf("acknowledged %d leases and %d items; %d operations failed across the kills", len(acked.leases), len(acked.items), acked.failed)

	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	var have map[string]string
	if err := eventuallyCtx(ctx, func() error {
		h, err := hashes(ctx, c)
		if err != nil {
			return err
		}
		have = h
		for _, m := range c.Members[1:] {
			if h[m.Name] != h[c.Members[0].Name] {
				return fmt.Errorf("members differ: %v", h)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("restarted nodes do not converge with their peers: %v", err)
	}
	t.Logf("converged: %v", have)

	leases, err := cl.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	present := map[int64]bool{}
	for _, l := range leases {
		present[l.ID] = true
	}
	var lost []string
	for id := range acked.leases {
		if !present[id] {
			lost = append(lost, fmt.Sprint(id))
		}
	}
	for key, id := range acked.items {
		it, err := cl.Get(ctx, key)
		if err != nil || it.LeaseID != id {
			lost = append(lost, fmt.Sprintf("%s (%+v, %v)", key, it, err))
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost: %s", len(lost), strings.Join(lost[:min(len(lost), 20)], ", "))
	}
}
