package lessor

import (
	"testing"
	"testing/synctest"
	"time"
)

// Tests of the yields inside long holds of the lock: a delivery batch and a
// batch of checkpoints let callers that wait for the lock in every
// yieldEvery leases, and only when someone waits.

// yieldTest returns a primary holding leases 1..n of ttl ms, granted at the
// same instant after the Promote (so they fall due together, with no
// spreading), and lease n+1 of a minute for renewals during yields.
func yieldTest(t *testing.T, n int, ttl int64) *lessor {
	t.Helper()
	le := newTest(t, Config{})
	le.Promote(0) // an empty table: no post-Promote round
	for i := LeaseID(1); i <= LeaseID(n); i++ {
		mustGrant(t, le, i, ttl)
	}
	mustGrant(t, le, LeaseID(n+1), 60_000)
	return le
}

// setYieldHook installs f to run at every yield, with the lock let go.
func setYieldHook(le *lessor, f func()) {
	le.mu.Lock()
	le.yieldHook = f
	le.mu.Unlock()
}

// yieldCount counts the yields a hook from renewing runs in, and the
// renewals made in them.
type yieldCount struct{ yields, renewed int }

// renewing returns a yield hook that checks that the lock is free and
// renews id, as a waiting renewal would.
func (c *yieldCount) renewing(t *testing.T, le *lessor, id LeaseID) func() {
	return func() {
		c.yields++
		if !le.mu.TryLock() {
			t.Error("the lock is held during a yield")
			return
		}
		le.mu.Unlock()
		if _, err := le.Renew(id); err != nil {
			t.Errorf("Renew(%d) during a yield = %v", id, err)
			return
		}
		c.renewed++
	}
}

// expiryTest is yieldTest with every lease's TTL/2 checkpoint applied, so
// that their expiry is all that falls due next, and a collector of what
// is delivered.
func expiryTest(t *testing.T, n int, ttl int64) (*lessor, *collector) {
	t.Helper()
	le := yieldTest(t, n, ttl)
	time.Sleep(time.Duration(ttl) / 2 * time.Millisecond)
	synctest.Wait()
	le.Checkpoint(flatten(drainCheckpoints(le)))
	return le, collect(t, le)
}

func TestCheckpointYieldsToWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, ttl = 1000, 2000
		le := yieldTest(t, n, ttl)
		var delivery, application yieldCount

		// Delivery: the checkpoints fall due together at TTL/2 while a
		// caller waits for the lock.
		le.waiting.Add(1)
		setYieldHook(le, delivery.renewing(t, le, n+1))
		time.Sleep(ttl / 2 * time.Millisecond)
		synctest.Wait()
		le.waiting.Add(-1)
		bs := drainCheckpoints(le)
		cps := flatten(bs)
		if len(cps) != n {
			t.Fatalf("%d checkpoints at TTL/2, want %d", len(cps), n)
		}
		want := 0
		for _, b := range bs {
			want += len(b) / yieldEvery
		}
		if want == 0 || delivery.yields != want || delivery.renewed != want {
			t.Fatalf("delivery of %d checkpoints in %d batches with a waiter: %d yields, %d renewals in them, want %d each",
				n, len(bs), delivery.yields, delivery.renewed, want)
		}

		// Application, first with nobody waiting, then with a waiter.
		setYieldHook(le, application.renewing(t, le, n+1))
		le.Checkpoint(cps[:n/2])
		if application.yields != 0 {
			t.Fatalf("a checkpoint batch with nobody waiting let the lock go %d times", application.yields)
		}
		le.waiting.Add(1)
		le.Checkpoint(cps[n/2:])
		le.waiting.Add(-1)
		if want := (n / 2) / yieldEvery; application.yields != want || application.renewed != want {
			t.Fatalf("%d checkpoints with a waiter: %d yields, %d renewals in them, want %d each",
				n/2, application.yields, application.renewed, want)
		}

		le.mu.RLock()
		defer le.mu.RUnlock()
		for _, cp := range cps {
			if l := le.leases[cp.ID]; l.remaining != cp.Remaining || l.cpInflight {
				t.Fatalf("lease %d after its checkpoint: remaining %d, in flight %v; want %d, false", cp.ID, l.remaining, l.cpInflight, cp.Remaining)
			}
		}
	})
}

func TestDeliveryYieldsToWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, ttl = 1000, 2000
		le, c := expiryTest(t, n, ttl)
		var yc yieldCount
		le.waiting.Add(1)
		setYieldHook(le, yc.renewing(t, le, n+1))
		time.Sleep(ttl/2*time.Millisecond + 10*time.Millisecond) // all fall due
		synctest.Wait()
		le.waiting.Add(-1)

		if c.count() != n {
			t.Fatalf("%d of %d expired leases delivered", c.count(), n)
		}
		want := 0
		for _, b := range c.allBatches() {
			want += len(b) / yieldEvery
		}
		if want == 0 || yc.yields != want || yc.renewed != want {
			t.Fatalf("delivery of %d leases in %d batches with a waiter: %d yields, %d renewals in them, want %d each",
				n, len(c.allBatches()), yc.yields, yc.renewed, want)
		}
		if _, err := le.Renew(1); err == nil {
			t.Fatal("a delivered lease was renewed")
		}
	})
}

// A batch being built when the term ends in one of its yields is dropped,
// as delivered batches are on Demote; the next term delivers every lease.
func TestDeliveryDropsBatchWhenTermEndsInYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, ttl = 1000, 2000
		le, c := expiryTest(t, n, ttl)
		demoted := false
		le.waiting.Add(1)
		setYieldHook(le, func() {
			if !demoted {
				demoted = true
				le.Demote()
			}
		})
		time.Sleep(ttl/2*time.Millisecond + 10*time.Millisecond)
		synctest.Wait()
		le.waiting.Add(-1)
		setYieldHook(le, nil)
		if !demoted {
			t.Fatal("the delivery never yielded")
		}
		if c.count() != 0 {
			t.Fatalf("%d leases delivered from a batch whose term ended while it was built", c.count())
		}

		le.Promote(0)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if c.count() != n {
			t.Fatalf("the next term delivered %d of %d leases", c.count(), n)
		}
		for i := LeaseID(1); i <= n; i++ {
			if d := c.deliveries(i); len(d) != 1 {
				t.Fatalf("lease %d delivered %d times, want once", i, len(d))
			}
		}
	})
}
