package client_test

import (
	"sync"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/client"
)

// renewalLog collects RenewalEvents.
type renewalLog struct {
	mu  sync.Mutex
	evs []client.RenewalEvent
}

func (l *renewalLog) add(ev client.RenewalEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *renewalLog) of(id int64) []client.RenewalEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []client.RenewalEvent
	for _, ev := range l.evs {
		if ev.LeaseID == id {
			out = append(out, ev)
		}
	}
	return out
}

func (l *renewalLog) count(id int64, o client.RenewalOutcome) int {
	n := 0
	for _, ev := range l.of(id) {
		if ev.Outcome == o {
			n++
		}
	}
	return n
}

// The observer sees every renewal: acknowledged ones with the send time the
// deadline counts from, NOT_FOUND, and renewals in flight when the last
// handle closes as unknown.
func TestRenewalObserver(t *testing.T) {
	fc := startCluster(t, 3, 0)
	var log renewalLog
	c := newClient(t, fc.Addrs(), client.WithRenewalObserver(log.add))
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
	eventually(t, "three acknowledged renewals", func() bool { return log.count(l.ID, client.RenewalAcked) >= 3 })
	// Hold renewals: once one arrives unanswered, every earlier one has been
	// answered and applied (the client has one renewal in flight per lease),
	// and no acknowledgement can follow.
	fc.StallRenewals(true)
	t.Cleanup(func() { fc.StallRenewals(false) })
	eventually(t, "a renewal held by the stalled leader", func() bool { return fc.Arrived(l.ID) > fc.Renewals(l.ID) })
	deadline := ka.Deadline()
	ka.Close()
	evs := log.of(l.ID)
	var last client.RenewalEvent
	for i, ev := range evs {
		switch {
		case ev.Outcome == client.RenewalAcked && ev.TTL == ttl && !ev.Acked.Before(ev.Sent):
			last = ev
		case ev.Outcome == client.RenewalUnknown && i >= len(evs)-2:
			// The held renewal, given up at Close (or, on a slow machine,
			// also once by a stream replaced as stalled).
		default:
			t.Fatalf("event %d of %d: %+v", i, len(evs), ev)
		}
	}
	if evs[len(evs)-1].Outcome != client.RenewalUnknown {
		t.Fatalf("the renewal in flight at Close was not reported unknown: %+v", evs)
	}
	if want := last.Sent.Add(ttl - client.SafetyMargin(ttl)); !deadline.Equal(want) {
		t.Fatalf("deadline %v, want the last acknowledged event's %v", deadline, want)
	}
	fc.StallRenewals(false)

	// NOT_FOUND.
	l2, err := c.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	ka2, err := c.KeepAlive(ctx, l2.ID)
	if err != nil {
		t.Fatal(err)
	}
	fc.Expire(l2.ID)
	<-ka2.Lost()
	if n := log.count(l2.ID, client.RenewalNotFound); n != 1 {
		t.Fatalf("%d NOT_FOUND events for an expired lease, want 1: %+v", n, log.of(l2.ID))
	}
}
