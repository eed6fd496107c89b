package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/client"
)

// Hand-off between holders, each with a larger fencing token (ARCHITECTURE.md
// rule 7), through release and through the holder's lease expiring.
func TestLockHandOff(t *testing.T) {
	fc := startCluster(t, 3, 0)
	c1 := newClient(t, fc.Addrs())
	c2 := newClient(t, fc.Addrs()[1:])
	ctx := testContext(t)
	const ttl = 500 * time.Millisecond

	l1, err := c1.Lock(ctx, "locks/a", ttl, client.WithLockValue("one"))
	if err != nil {
		t.Fatal(err)
	}
	it, err := c2.Get(ctx, "locks/a")
	if err != nil || it.Value != "one" || it.Revision != l1.Token() || it.LeaseID != l1.LeaseID() {
		t.Fatalf("Get = %+v, %v", it, err)
	}

	// A waiter gives up when its context ends, and revokes its lease.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c2.Lock(short, "locks/a", ttl); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held = %v", err)
	}
	if n := fc.LeaseCount(); n != 1 {
		t.Fatalf("%d leases after a failed Lock, want 1", n)
	}

	got := make(chan *client.Lock, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := c2.Lock(ctx, "locks/a", ttl, client.WithLockValue("two"))
		errc <- err
		got <- l
	}()
	// The waiter polls; the holder keeps its lease alive well past its TTL.
	eventually(t, "holder renewals", func() bool { return fc.Renewals(l1.LeaseID()) >= 4 })
	if len(errc) != 0 {
		t.Fatalf("second Lock returned while the first is held: %v", <-errc)
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !isClosed(l1.Lost()) {
		t.Fatal("Lost not closed after Release")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	l2 := <-got
	if l2.Token() <= l1.Token() {
		t.Fatalf("token %d after %d: not increasing", l2.Token(), l1.Token())
	}

	// The holder's lease vanishes: it learns it may have lost the lock, and
	// the next holder gets a larger token.
	fc.Expire(l2.LeaseID())
	<-l2.Lost()
	l3, err := c1.Lock(ctx, "locks/a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if l3.Token() <= l2.Token() {
		t.Fatalf("token %d after %d: not increasing", l3.Token(), l2.Token())
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatalf("Release of a lost lock: %v", err)
	}
	if err := l3.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := fc.LeaseCount(); n != 0 {
		t.Fatalf("%d leases left, want 0", n)
	}
}

func TestLockOnCallerLease(t *testing.T) {
	fc := startCluster(t, 1, 0)
	c := newClient(t, fc.Addrs())
	ctx := testContext(t)
	l, err := c.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := c.KeepAlive(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := c.LockOn(ctx, ka, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TimeToLive(ctx, l.ID, false); err != nil {
		t.Fatalf("LockOn's Release must leave the lease: %v", err)
	}
	if isClosed(ka.Lost()) {
		t.Fatal("LockOn's Release closed the caller's KeepAlive")
	}
}
