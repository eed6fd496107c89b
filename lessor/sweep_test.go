package lessor

import (
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// Rule 5: Promote schedules leases in chunks of sweepSize; with more leases
// than a chunk every lease is still scheduled, and each only once.
func TestPromoteSweepSchedulesEveryLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		le.sweepSize = 7
		const n = 1000
		for i := LeaseID(1); i <= n; i++ {
			mustGrant(t, le, i, 1500+int64(i%13))
		}
		c := collect(t, le)
		promoted := time.Now()
		le.Promote(200 * time.Millisecond)
		checkSweptThenDelivered(t, le, c, n, 5*time.Second, func(i LeaseID) time.Time {
			return promoted.Add(ms(1500+int64(i%13)) + 200*time.Millisecond) // TTL + extend
		})
	})
}

// Rule 5: Promote "never holds a lock long enough to stall renewals": Renew
// and Grant during a running sweep succeed, and the sweep does not overwrite
// what they scheduled.
func TestRenewDuringSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 50_000
		le := sweepTest(t, 16, n, 10_000)
		time.Sleep(time.Second)
		const extend = 3 * time.Second
		le.Promote(extend)
		promoted := time.Now()
		renewed := map[LeaseID]bool{}
		midSweep := 0
		for i := LeaseID(n); i > 0 && len(renewed) < 500; i -= 97 {
			le.mu.RLock()
			if le.expHeap.Len() < n {
				midSweep++
			}
			le.mu.RUnlock()
			if ttl, err := le.Renew(i); err != nil || ttl != 10_000 {
				t.Fatalf("Renew(%d) during the sweep = %d, %v", i, ttl, err)
			}
			renewed[i] = true
		}
		mustGrant(t, le, n+1, 10_000)
		renewed[n+1] = true
		synctest.Wait() // the sweep finishes
		t.Logf("%d of %d renewals saw the sweep unfinished", midSweep, len(renewed)-1)
		for i := LeaseID(1); i <= n+1; i++ {
			got := expiryOf(le, le.Lookup(i))
			want := promoted.Add(10*time.Second + extend)
			if renewed[i] {
				want = promoted.Add(10 * time.Second)
				if !got.Equal(want) {
					t.Fatalf("renewed lease %d expires at promote%+v, want promote%+v", i, got.Sub(promoted), want.Sub(promoted))
				}
			} else if got.Before(want) {
				t.Fatalf("lease %d expires at promote%+v, before promote%+v", i, got.Sub(promoted), want.Sub(promoted))
			}
		}
	})
}

// Promote while a previous sweep is still running (leadership lost and
// regained) leaves every lease scheduled once in the new term.
func TestPromoteTwiceDuringSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 5000
		le := sweepTest(t, 8, n, 1500)
		c := collect(t, le)
		le.Promote(time.Second)
		le.Demote()
		le.Promote(time.Second)
		le.Promote(2 * time.Second)
		promoted := time.Now()
		checkSweptThenDelivered(t, le, c, n, 10*time.Second, func(LeaseID) time.Time {
			return promoted.Add(3500 * time.Millisecond) // TTL + the last extend
		})
	})
}

// Data flow, Expiry: a lease already due when a Promote's sweep schedules it
// (a checkpointed remainder that ran out while this node was a follower) is
// delivered promptly, also when the table is larger than one sweep chunk and
// the sweep runs in the background: the sweep must wake the delivery loop,
// not leave it asleep until its next poll (maxWait, 250 ms).
func TestLargePromoteWakesDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		le.sweepSize = 7
		const n = 100
		for i := LeaseID(1); i <= n; i++ {
			mustGrant(t, le, i, 60_000)
			le.Checkpoint([]Checkpoint{{ID: i, Remaining: 1000}})
		}
		time.Sleep(10 * time.Second)
		c := collect(t, le)
		promoted := time.Now()
		le.Promote(0)
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if got := c.count(); got != n {
			t.Fatalf("%d of %d overdue leases delivered within 50ms of a chunked Promote", got, n)
		}
		for i := LeaseID(1); i <= n; i++ {
			if at, _ := c.firstTime(i); at.Before(promoted) {
				t.Fatal("delivered before the Promote")
			}
		}
	})
}

// Rule 5: the sweep collects the leases before it schedules them; a lease
// revoked in between is not scheduled (it would be delivered as expired
// after its revoke, and the heaps would hold a lease the table does not),
// and a lease renewed or granted in between keeps the expiry it got.
func TestSweepSkipsLeasesChangedAfterCollection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 3000
		le := sweepTest(t, 16, n, 1500)
		c := collect(t, le)
		revoked := map[LeaseID]bool{}
		var promoted time.Time
		le.sweepHook = func(stage sweepStage) {
			if stage != sweepCollected {
				return
			}
			for i := LeaseID(3); i <= n; i += 3 {
				if err := le.Revoke(i); err != nil {
					t.Errorf("Revoke(%d) between collection and scheduling: %v", i, err)
				}
				revoked[i] = true
			}
			if ttl, err := le.Renew(1); err != nil || ttl != 1500 {
				t.Errorf("Renew(1) between collection and scheduling = %d, %v", ttl, err)
			}
			mustGrant(t, le, n+1, 1500)
		}
		le.Promote(time.Second)
		promoted = time.Now()
		synctest.Wait()
		le.mu.RLock()
		want := n - len(revoked) + 1
		for _, h := range []*leaseHeap{&le.expHeap, &le.cpHeap} {
			checkHeap(t, h)
			for _, it := range h.items {
				if it.l.revoked {
					t.Errorf("revoked lease %d is in a heap", it.l.ID)
				}
			}
		}
		if got := le.expHeap.Len(); got != want {
			t.Errorf("expiry heap holds %d leases, want %d", got, want)
		}
		le.mu.RUnlock()
		if got, want := expiryOf(le, le.Lookup(1)), promoted.Add(1500*time.Millisecond); !got.Equal(want) {
			t.Errorf("lease renewed mid-sweep expires at promote%+v, want promote%+v", got.Sub(promoted), want.Sub(promoted))
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		for id := range revoked {
			if _, ok := c.firstTime(id); ok {
				t.Fatalf("revoked lease %d delivered as expired", id)
			}
		}
		if c.count() != want {
			t.Fatalf("%d leases delivered, want %d", c.count(), want)
		}
	})
}

// Promote is O(1) for a table the sweep schedules: the server calls it
// holding its term lock, which new KeepAlive streams wait for, and a large
// heap allocation there started a GC cycle whose mark assist held them up
// (measured: bench/results/design-measurements.md). The sweep is held at
// its start, so that only Promote's own allocations are counted.
func TestPromoteAllocatesNothingForALargeTable(t *testing.T) {
	le := sweepTest(t, 1024, 200_000, 60_000)
	release := make(chan struct{})
	le.sweepHook = func(stage sweepStage) {
		if stage == sweepStarting {
			<-release
		}
	}
	defer close(release)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	le.Promote(time.Second)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Fatalf("Promote of 200,000 leases allocated %d bytes; want the heaps allocated by the sweep", got)
	}
}

// checkSweptThenDelivered waits for a Promote's sweep and checks that it
// scheduled each of leases 1..n once; then, after wait, that every one was
// delivered, none before notBefore(id).
func checkSweptThenDelivered(t *testing.T, le *lessor, c *collector, n int, wait time.Duration, notBefore func(LeaseID) time.Time) {
	t.Helper()
	synctest.Wait()
	if got := expHeapLen(le); got != n {
		t.Fatalf("expiry heap holds %d leases after the sweep, want %d", got, n)
	}
	time.Sleep(wait)
	synctest.Wait()
	if c.count() != n {
		t.Fatalf("%d of %d leases delivered", c.count(), n)
	}
	for i := LeaseID(1); i <= LeaseID(n); i++ {
		at, _ := c.firstTime(i)
		if want := notBefore(i); at.Before(want) {
			t.Fatalf("lease %d delivered %v before its TTL and extension ran out", i, want.Sub(at))
		}
	}
}
