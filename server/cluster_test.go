package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/lessor"
)

// minTTL is the smallest TTL the test clusters accept (1.5 x election).
const minTTL = testElection * 3 / 2

// TestClusterLeaseLifecycle: grant, attach, read back on every node, revoke,
// and expiry, each seen identically by every replica.
func TestClusterLeaseLifecycle(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	ctx := ctxT(t)

	id, ttl, err := ld.ops.grant(ctx, 0, 5000, 11)
	if err != nil || id == lessor.NoLease || ttl != 5000 {
		t.Fatalf("grant: id %d ttl %d err %v", id, ttl, err)
	}
	it, err := ld.ops.attach(ctx, id, "svc/a", "v1", 12)
	if err != nil || it.Revision == 0 || it.LeaseID != id {
		t.Fatalf("attach: %+v %v", it, err)
	}
	c.converge()
	for _, n := range c.running() {
		got, err := n.reader.get(ctx, "svc/a", true)
		if err != nil || got != it {
			t.Fatalf("%s: item %+v err %v, want %+v", n.Name(), got, err, it)
		}
		info, err := n.reader.timeToLive(ctx, id, true, true)
		if err != nil || info.GrantedTTL != 5000 || len(info.Keys) != 1 || info.Keys[0] != "svc/a" {
			t.Fatalf("%s: ttl %+v err %v", n.Name(), info, err)
		}
	}

	if err := ld.ops.revoke(ctx, id, 13); err != nil {
		t.Fatal(err)
	}
	c.converge()
	for _, n := range c.running() {
		if _, err := n.reader.get(ctx, "svc/a", true); !errors.Is(err, lessor.ErrItemNotFound) {
			t.Fatalf("%s: item after revoke: %v", n.Name(), err)
		}
		if _, err := n.reader.timeToLive(ctx, id, false, true); !errors.Is(err, lessor.ErrLeaseNotFound) {
			t.Fatalf("%s: lease after revoke: %v", n.Name(), err)
		}
	}

	// Expiry: present at every look before sent + TTL, gone everywhere soon after.
	sent := time.Now()
	id2, ttl2, err := ld.ops.grant(ctx, 0, 1, 14) // raised to the minimum
	if err != nil || ttl2 != minTTL.Milliseconds() {
		t.Fatalf("grant short: ttl %d err %v", ttl2, err)
	}
	if _, err := ld.ops.attach(ctx, id2, "svc/b", "", 15); err != nil {
		t.Fatal(err)
	}
	var goneAt time.Time
	for goneAt.IsZero() {
		look := time.Now()
		_, err := ld.reader.get(ctx, "svc/b", false)
		switch {
		case errors.Is(err, lessor.ErrItemNotFound):
			if look.Before(sent.Add(minTTL)) {
				t.Fatalf("item gone %v after the grant was sent, before its TTL %v", look.Sub(sent), minTTL)
			}
			goneAt = look
		case err != nil:
			t.Fatal(err)
		case time.Since(sent) > 2*minTTL+testExtend+5*time.Second:
			t.Fatalf("lease not expired %v after grant", time.Since(sent))
		}
		time.Sleep(5 * time.Millisecond) // sampling interval, not synchronisation
	}
	t.Logf("lease with TTL %v expired %v after the grant was sent", minTTL, goneAt.Sub(sent))
	c.converge()
	for _, n := range c.running() {
		if _, err := n.reader.get(ctx, "svc/b", true); !errors.Is(err, lessor.ErrItemNotFound) {
			t.Fatalf("%s: expired item still present: %v", n.Name(), err)
		}
	}
}

// TestClusterAttachExclusivityAndFencing (rule 7): an item belongs to one
// lease; its revision is a fencing token that only grows.
func TestClusterAttachExclusivityAndFencing(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	ctx := ctxT(t)
	a, _, err := ld.ops.grant(ctx, 101, 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := ld.ops.grant(ctx, 102, 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ld.ops.grant(ctx, 101, 10000, 0); !errors.Is(err, lessor.ErrLeaseExists) {
		t.Fatalf("duplicate grant: %v", err)
	}
	first, err := ld.ops.attach(ctx, a, "lock", "holder-a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ld.ops.attach(ctx, b, "lock", "holder-b", 0); !errors.Is(err, lessor.ErrItemHeld) {
		t.Fatalf("attach held item: %v", err)
	}
	again, err := ld.ops.attach(ctx, a, "lock", "holder-a2", 0)
	if err != nil || again.Revision != first.Revision || again.Value != "holder-a2" {
		t.Fatalf("re-attach: %+v %v (first %+v)", again, err, first)
	}
	if err := ld.ops.detach(ctx, b, "lock", 0); !errors.Is(err, lessor.ErrItemHeld) {
		t.Fatalf("detach by another lease: %v", err)
	}
	if err := ld.ops.revoke(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	second, err := ld.ops.attach(ctx, b, "lock", "holder-b", 0)
	if err != nil || second.Revision <= first.Revision {
		t.Fatalf("attach after revoke: %+v %v (first revision %d)", second, err, first.Revision)
	}
	if _, err := ld.ops.attach(ctx, b, "", "x", 0); err == nil {
		t.Fatal("empty key accepted")
	}
	if _, _, err := ld.ops.grant(ctx, 0, -5, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("negative TTL: %v", err)
	}
	c.converge()
}

// testRenewer keeps leases alive through whichever node leads, as a client
// would, and records when each lease was last acknowledged (by send time).
type testRenewer struct {
	c        *testCluster
	ids      []lessor.LeaseID
	every    time.Duration
	mu       sync.Mutex
	lastSent map[lessor.LeaseID]time.Time // send time of the last acknowledged renewal
	rounds   atomic.Int64
	lost     atomic.Int64 // leases reported not found
	resumed  chan time.Time
}

func (r *testRenewer) run(ctx context.Context) {
	out := make([]RenewResult, 0, len(r.ids))
	next := time.Now()
	for ctx.Err() == nil {
		time.Sleep(time.Until(next))
		sent := time.Now()
		var ld *Node
		for _, n := range r.c.running() {
			if n != nil && n.IsLeader() {
				ld = n
			}
		}
		if ld == nil {
			next = time.Now().Add(20 * time.Millisecond)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := ld.renewer.renew(rctx, r.ids, out[:0])
		cancel()
		if err != nil {
			next = time.Now().Add(20 * time.Millisecond)
			continue
		}
		r.mu.Lock()
		for _, x := range res {
			switch {
			case x.Err == nil:
				r.lastSent[x.ID] = sent
			case errors.Is(x.Err, lessor.ErrLeaseNotFound), errors.Is(x.Err, lessor.ErrLeaseExpired):
				r.lost.Add(1)
			}
		}
		r.mu.Unlock()
		r.rounds.Add(1)
		select {
		case r.resumed <- time.Now():
		default:
		}
		next = sent.Add(r.every)
	}
}

// TestClusterLeaderKillKeepsRenewedLeases (rules 2 and 3): the leader dies
// while 1,000 leases are renewed every TTL/3; no renewed lease expires,
// renewals resume, and no remaining TTL afterwards exceeds TTL + extend.
func TestClusterLeaderKillKeepsRenewedLeases(t *testing.T) {
	const leases, ttl = 1000, 2400 * time.Millisecond
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	ctx := ctxT(t)
	ids := grantMany(t, ld, leases, ttl)

	r := &testRenewer{c: c, ids: ids, every: ttl / 3, lastSent: map[lessor.LeaseID]time.Time{}, resumed: make(chan time.Time, 1)}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(rctx) }()
	defer func() { stop(); <-done }()
	waitRounds(t, r, 2)

	li, _ := c.leader()
	killedAt := time.Now()
	c.kill(li)
	_, ld = c.leader()
	before := r.rounds.Load()
	waitRounds(t, r, before+1)
	resumed := time.Since(killedAt)
	t.Logf("renewals resumed %v after the leader was killed", resumed)

	for _, id := range ids {
		info, err := ld.reader.timeToLive(ctx, id, false, false)
		if err != nil {
			t.Fatalf("lease %d after failover: %v", id, err)
		}
		if info.Remaining > ttl+testExtend {
			t.Fatalf("lease %d has %v left after failover, more than TTL + extend (%v)", id, info.Remaining, ttl+testExtend)
		}
	}
	waitRounds(t, r, r.rounds.Load()+3)
	if lost := r.lost.Load(); lost != 0 {
		t.Fatalf("%d renewed leases were lost", lost)
	}
	c.restart(li)
	c.converge()
}

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

// TestClusterRestartCatchesUp: a stopped node restarts from its data dir and
// catches up, from the log and, once the others have compacted, from a snapshot.
func TestClusterRestartCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 200 * time.Millisecond
	})
	li, ld := c.leader()
	f := (li + 1) % 3
	grantMany(t, ld, 10, 60*time.Second)
	c.converge()

	// From the log.
	c.kill(f)
	grantMany(t, ld, 20, 60*time.Second)
	c.restart(f)
	c.converge()

	// From a snapshot: the others move far past what they keep in the log.
	// One grant at a time: concurrent ones would share log entries (group
	// commit), and it is entries that the snapshot threshold counts.
	c.kill(f)
	for range 200 {
		if _, _, err := ld.ops.grant(ctxT(t), 0, 60_000, 0); err != nil {
			t.Fatal(err)
		}
	}
	snapDir := filepath.Join(c.cfgs[li].DataDir, "snapshots")
	if err := eventually(10*time.Second, func() error { return hasSnapshot(snapDir) }); err != nil {
		t.Fatalf("leader made no snapshot: %v", err)
	}
	followerSnaps := filepath.Join(c.cfgs[f].DataDir, "snapshots")
	before := snapshotNames(followerSnaps)
	c.restart(f)
	hash := c.converge()
	installed := false
	for name := range snapshotNames(followerSnaps) {
		installed = installed || !before[name]
	}
	if !installed {
		t.Fatalf("restarted follower caught up without installing a snapshot (had %v)", before)
	}
	if c.node(f).info.status(true).StateHash != hash {
		t.Fatal("restarted follower differs")
	}
	info, err := c.node(f).reader.leases(ctxT(t), true)
	if err != nil || len(info) != 230 {
		t.Fatalf("restarted follower has %d leases (%v), want 230", len(info), err)
	}
}

func hasSnapshot(dir string) error {
	if len(snapshotNames(dir)) == 0 {
		return errors.New("no snapshot in " + dir)
	}
	return nil
}

// snapshotNames lists the completed snapshots in a FileSnapshotStore dir.
func snapshotNames(dir string) map[string]bool {
	names := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && filepath.Ext(e.Name()) != ".tmp" {
			names[e.Name()] = true
		}
	}
	return names
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

func waitRounds(t *testing.T, r *testRenewer, n int64) {
	t.Helper()
	if err := eventually(15*time.Second, func() error {
		if r.rounds.Load() < n {
			return errors.New("renewals have not resumed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
