package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/lessor"
)

// TestClusterRepeatedFailoverBoundedExpiry (rule 3): five leader changes in a
// row do not keep an unrenewed lease alive past 2 x TTL + extend + the time
// spent failing over, counted from its last renewal (here: its grant).
func TestClusterRepeatedFailoverBoundedExpiry(t *testing.T) {
	const ttl = 3000 * time.Millisecond
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	ctx := ctxT(t)
	sent := time.Now()
	id, _, err := ld.ops.grant(ctx, 0, ttl.Milliseconds(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Sample every 10ms, on every running node, when the lease disappears.
	gone := make(chan time.Duration, 1)
	sctx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	go func() {
		seen := map[string]bool{} // a node counts once it has applied the grant
		for sctx.Err() == nil {
			for _, n := range c.running() {
				if n == nil {
					continue
				}
				_, err := n.reader.timeToLive(sctx, id, false, true)
				switch {
				case err == nil:
					seen[n.Name()] = true
				case errors.Is(err, lessor.ErrLeaseNotFound) && seen[n.Name()]:
					gone <- time.Since(sent)
					return
				}
			}
			time.Sleep(10 * time.Millisecond) // sampling interval
		}
	}()
	var failover time.Duration
	for range 5 {
		time.Sleep(ttl / 3) // let the leader serve a while between changes
		_, ld := c.leader()
		start := time.Now()
		if err := ld.TransferLeadership(); err != nil {
			t.Logf("transfer: %v", err)
		}
		c.leader()
		failover += time.Since(start)
	}
	bound := 2*ttl + testExtend + failover
	select {
	case d := <-gone:
		t.Logf("unrenewed lease gone %v after its grant, across 5 leader changes (bound %v)", d, bound)
		if d > bound {
			t.Fatalf("unrenewed lease alive %v after its grant; bound 2 x TTL + extend + failover = %v", d, bound)
		}
		if d < ttl {
			t.Fatalf("lease expired early: %v < TTL %v", d, ttl)
		}
	case <-time.After(bound - time.Since(sent) + time.Second):
		t.Fatalf("unrenewed lease still alive %v after its grant; bound %v", time.Since(sent), bound)
	}
}

func grantMany(t *testing.T, ld *Node, n int, ttl time.Duration) []lessor.LeaseID {
	t.Helper()
	ids := make([]lessor.LeaseID, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id, _, err := ld.ops.grant(context.Background(), 0, ttl.Milliseconds(), 0)
			ids[i] = id
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}
