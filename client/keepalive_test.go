package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/client"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A leader change mid-KeepAlive: the stream ends with Unavailable + hint, the
// manager follows it to the new leader and no lease is reported lost.
func TestKeepAliveSurvivesLeaderChange(t *testing.T) {
	fc := startCluster(t, 3, 0)
	c := newClient(t, fc.Addrs())
	ctx := testContext(t)
	const ttl = 300 * time.Millisecond
	var kas []*client.KeepAlive
	for range 3 {
		l, err := c.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		ka, err := c.KeepAlive(ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ka.TTL() != ttl || time.Until(ka.Deadline()) <= ttl/2 {
			t.Fatalf("TTL %v, deadline in %v", ka.TTL(), time.Until(ka.Deadline()))
		}
		kas = append(kas, ka)
	}
	for _, leader := range []int{1, 2, 0} {
		before := fc.Renewals(kas[0].ID())
		fc.SetLeader(leader)
		// Several TTLs' worth of renewals on the new leader.
		eventually(t, "renewals on the new leader", func() bool { return fc.Renewals(kas[0].ID()) >= before+8 })
		if got := c.Leader(); got != fc.Addrs()[leader] {
			t.Fatalf("keepalive follows %q, want %q", got, fc.Addrs()[leader])
		}
	}
	for _, ka := range kas {
		if isClosed(ka.Lost()) || ka.State() != client.StateHealthy {
			t.Fatalf("lease %d: state %v, err %v", ka.ID(), ka.State(), ka.Err())
		}
	}
	if n := fc.LeaseCount(); n != 3 {
		t.Fatalf("%d leases on the server, want 3", n)
	}
	kas[0].Close()
	if !errors.Is(kas[0].Err(), client.ErrClosed) || !isClosed(kas[0].Lost()) {
		t.Fatalf("after Close: %v", kas[0].Err())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ka := range kas[1:] {
		<-ka.Lost()
		if !errors.Is(ka.Err(), client.ErrClosed) {
			t.Fatalf("after client Close: %v", ka.Err())
		}
	}
}

// Jeopardy when acknowledgements stop, recovery when they resume, loss when
// the local deadline passes (ARCHITECTURE.md rule 2: the client never
// relies on the lease past send time of the last acked renewal + TTL).
func TestKeepAliveJeopardyRecoveryAndLoss(t *testing.T) {
	fc := startCluster(t, 1, 0)
	c := newClient(t, fc.Addrs())
	ctx := testContext(t)
	const ttl = 600 * time.Millisecond
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := c.KeepAlive(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	j := ka.Jeopardy()
	if isClosed(j) {
		t.Fatal("jeopardy while healthy")
	}
	fc.StallRenewals(true)
	<-j
	if ka.State() != client.StateJeopardy {
		t.Fatalf("state %v, want jeopardy", ka.State())
	}
	if left := time.Until(ka.Deadline()); left > ttl/3 || left <= 0 {
		t.Fatalf("jeopardy with %v left, want (0, TTL/3]", left)
	}
	fc.StallRenewals(false)
	eventually(t, "recovery", func() bool { return ka.State() == client.StateHealthy })
	if isClosed(ka.Jeopardy()) || isClosed(ka.Lost()) {
		t.Fatal("jeopardy channel not renewed after recovery")
	}

	fc.StallRenewals(true)
	defer fc.StallRenewals(false)
	<-ka.Lost()
	if !errors.Is(ka.Err(), client.ErrLeaseExpired) {
		t.Fatalf("err = %v, want ErrLeaseExpired", ka.Err())
	}
	if now := time.Now(); now.Before(ka.Deadline()) {
		t.Fatalf("reported lost %v before the deadline", ka.Deadline().Sub(now))
	}
	if !isClosed(ka.Jeopardy()) {
		t.Fatal("a lost lease must also be in jeopardy")
	}
}

func TestKeepAliveNotFound(t *testing.T) {
	fc := startCluster(t, 2, 1)
	c := newClient(t, fc.Addrs())
	ctx := testContext(t)
	if _, err := c.KeepAlive(ctx, 12345); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("KeepAlive(unknown) = %v", err)
	}
	if _, err := c.Renew(ctx, 12345); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("Renew(unknown) = %v", err)
	}
	l, err := c.Grant(ctx, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if ttl, err := c.Renew(ctx, l.ID); err != nil || ttl != 300*time.Millisecond {
		t.Fatalf("Renew = %v, %v", ttl, err)
	}
	ka, err := c.KeepAlive(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	// A second handle on the same lease shares the renewals; closing it
	// leaves the first one running.
	ka2, err := c.KeepAlive(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	ka2.Close()
	fc.Expire(l.ID)
	<-ka.Lost()
	if !errors.Is(ka.Err(), client.ErrLeaseNotFound) {
		t.Fatalf("err = %v, want ErrLeaseNotFound", ka.Err())
	}
}

// Rule 2 counts from the send time of an acknowledged renewal. A Renew that
// arrives while a renewal of the same lease is in flight must not be answered
// by that older renewal's acknowledgement, but by one sent after it asked.
func TestRenewWaitsForARenewalSentAfterIt(t *testing.T) {
	cl := startCluster(t, 1, 0)
	c := newClient(t, cl.Addrs())
	ctx := testContext(t)
	l, err := c.Grant(ctx, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := c.KeepAlive(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Close()
	before := cl.Arrived(l.ID)
	cl.StallRenewals(true) // the next renewal stays in flight
	first := make(chan error, 1)
	go func() { _, err := c.Renew(ctx, l.ID); first <- err }()
	eventually(t, "a renewal in flight", func() bool { return cl.Arrived(l.ID) > before })
	inFlight := cl.Arrived(l.ID)
	second := make(chan error, 1)
	go func() { _, err := c.Renew(ctx, l.ID); second <- err }()
	// Let the second Renew register before the held renewal is answered.
	eventually(t, "the second Renew to wait", func() bool { return c.KeptAlive(l.ID) >= 3 })
	cl.StallRenewals(false)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if got := cl.Arrived(l.ID); got <= inFlight {
		t.Fatalf("the second Renew was answered by the renewal already in flight (arrived %d, in flight %d)", got, inFlight)
	}
}
