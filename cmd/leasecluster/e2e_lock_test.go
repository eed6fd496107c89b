package main_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/internal/proctest"
)

// TestE2ELockHandover: client B's Lock on a key that client A holds blocks
// until A's lease is revoked by another process (the CLI), and then returns
// a strictly higher fencing token (rule 7); B never holds the key while A
// does.
func TestE2ELockHandover(t *testing.T) {
	c := sharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	newClient := func() *client.Client {
		cl, err := client.New(ctx, c.Endpoints())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	ca, cb := newClient(), newClient()
	key := fmt.Sprintf("locks/e2e-%d", time.Now().UnixNano())

	la, err := ca.Lock(ctx, key, 5*time.Second, client.WithLockValue("A"))
	if err != nil {
		t.Fatal(err)
	}
	before, err := ca.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		l   *client.Lock
		err error
		at  time.Time
	}
	bDone := make(chan result, 1)
	go func() {
		l, err := cb.Lock(ctx, key, 5*time.Second, client.WithLockValue("B"))
		bDone <- result{l, err, time.Now()}
	}()

	// B's Lock grants its lease before it starts polling the held key.
	waitFor(t, 10*time.Second, func() error {
		ls, err := ca.Leases(ctx)
		if err != nil {
			return err
		}
		if len(ls) <= len(before) {
			return fmt.Errorf("B's lease not granted yet (%d leases)", len(ls))
		}
		return nil
	})
	// While A holds the key, B must stay blocked through several of its
	// polls (backoff at most 500ms each).
	select {
	case r := <-bDone:
		t.Fatalf("B's Lock returned while A held %s: lock %v, err %v", key, r.l, r.err)
	case <-time.After(1500 * time.Millisecond):
	}
	if it, err := ca.Get(ctx, key); err != nil || it.LeaseID != la.LeaseID() || it.Value != "A" || it.Revision != la.Token() {
		t.Fatalf("while A holds it: item %+v, %v; want lease %d, revision %d", it, err, la.LeaseID(), la.Token())
	}

	// Another process revokes A's lease.
	revokeStart := time.Now()
	out := cliOK(t, nil, "lease", "revoke", fmt.Sprint(la.LeaseID()), "--endpoints", endpoints(c))
	if want := fmt.Sprintf("lease %d revoked\n", la.LeaseID()); out != want {
		t.Errorf("revoke output %q, want %q", out, want)
	}

	var r result
	select {
	case r = <-bDone:
	case <-time.After(15 * time.Second):
		t.Fatal("B did not acquire the lock after A's lease was revoked")
	}
	if r.err != nil {
		t.Fatalf("B's Lock: %v", r.err)
	}
	defer r.l.Release(context.WithoutCancel(ctx))
	if !r.at.After(revokeStart) {
		t.Errorf("B acquired at %v, before A's lease was revoked at %v", r.at, revokeStart)
	}
	if r.l.Token() <= la.Token() {
		t.Errorf("fencing token went from %d (A) to %d (B); must strictly increase", la.Token(), r.l.Token())
	}
	it, err := cb.Get(ctx, key)
	if err != nil || it.LeaseID != r.l.LeaseID() || it.Value != "B" || it.Revision != r.l.Token() {
		t.Errorf("after the handover: item %+v, %v; want lease %d, revision %d", it, err, r.l.LeaseID(), r.l.Token())
	}
	// A learns that it lost the lock (its renewals now find no lease).
	select {
	case <-la.Lost():
	case <-time.After(10 * time.Second):
		t.Error("A's Lock.Lost not closed after its lease was revoked")
	}
	if err := la.Release(ctx); err != nil {
		t.Errorf("A's Release after losing the lock: %v", err)
	}
	// A's late Release must not take B's item.
	if it, err := cb.Get(ctx, key); err != nil || it.LeaseID != r.l.LeaseID() {
		t.Errorf("after A's Release: item %+v, %v; still want B's lease %d", it, err, r.l.LeaseID())
	}
}

// waitFor polls cond until it returns nil, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := proctest.Eventually(timeout, 20*time.Millisecond, cond); err != nil {
		t.Fatal(err)
	}
}
