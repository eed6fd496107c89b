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

// renewInYield is a yield hook body: it checks that the lock is free and
// renews id, as a waiting renewal would. It reports whether it renewed.
func renewInYield(t *testing.T, le *lessor, id LeaseID) bool {
	if !le.mu.TryLock() {
		t.Error("the lock is held during a yield")
		return false
	}
	le.mu.Unlock()
	if _, err := le.Renew(id); err != nil {
		t.Errorf("Renew(%d) during a yield = %v", id, err)
		return false
	}
	return true
}

func TestCheckpointYieldsToWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, ttl = 1000, 2000
		le := yieldTest(t, n, ttl)
		yields, renewed := 0, 0
		inYield := func() {
			yields++
			if renewInYield(t, le, n+1) {
				renewed++
			}
		}

		// Delivery: the checkpoints fall due together at TTL/2 while a
		// caller waits for the lock.
		le.waiting.Add(1)
		setYieldHook(le, inYield)
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
		if want == 0 || yields != want || renewed != want {
			t.Fatalf("delivery of %d checkpoints in %d batches with a waiter: %d yields, %d renewals in them, want %d each",
				n, len(bs), yields, renewed, want)
		}

		// Application, first with nobody waiting, then with a waiter.
		yields, renewed = 0, 0
		setYieldHook(le, func() { yields++ })
		le.Checkpoint(cps[:n/2])
		if yields != 0 {
			t.Fatalf("a checkpoint batch with nobody waiting let the lock go %d times", yields)
		}

		le.waiting.Add(1)
		setYieldHook(le, inYield)
		le.Checkpoint(cps[n/2:])
		le.waiting.Add(-1)
		if want := (n / 2) / yieldEvery; yields != want || renewed != want {
			t.Fatalf("%d checkpoints with a waiter: %d yields, %d renewals in them, want %d each", n/2, yields, renewed, want)
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
		le := yieldTest(t, n, ttl)
		time.Sleep(ttl / 2 * time.Millisecond)
		synctest.Wait()
		le.Checkpoint(flatten(drainCheckpoints(le))) // none is offered again
		c := collect(t, le)

		yields, renewed := 0, 0
		le.waiting.Add(1)
		setYieldHook(le, func() {
			yields++
			if renewInYield(t, le, n+1) {
				renewed++
			}
		})
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
		if want == 0 || yields != want || renewed != want {
			t.Fatalf("delivery of %d leases in %d batches with a waiter: %d yields, %d renewals in them, want %d each",
				n, len(c.allBatches()), yields, renewed, want)
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
		le := yieldTest(t, n, ttl)
		time.Sleep(ttl / 2 * time.Millisecond)
		synctest.Wait()
		le.Checkpoint(flatten(drainCheckpoints(le)))
		c := collect(t, le)

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
