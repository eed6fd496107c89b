package lessor

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of rule 3 (bounded expiry through checkpoints) and of the reset that
// keeps rule 2 (no early expiry) when a renewal meets a checkpoint.

// Rule 3: "The leader replicates Checkpoint commands ... for leases that have
// gone unrenewed for a while (more than TTL/2)", carrying the remaining TTL.
func TestCheckpointUnrenewedLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		le.Promote(0) // an empty table: no post-Promote round
		time.Sleep(time.Second)
		mustGrant(t, le, 1, 3000)
		mustGrant(t, le, 2, 3000)
		time.Sleep(1500*time.Millisecond - time.Millisecond)
		synctest.Wait()
		if got := drainCheckpoints(le); len(got) != 0 {
			t.Fatalf("checkpoints before TTL/2: %v", got)
		}
		if _, err := le.Renew(2); err != nil { // lease 2 stays renewed
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got := flatten(drainCheckpoints(le))
		want := []Checkpoint{{ID: 1, Remaining: 1500, Gen: 0}}
		if len(got) != 1 || got[0] != want[0] {
			t.Fatalf("checkpoints at TTL/2 = %+v, want %+v", got, want)
		}
	})
}

// Rule 3: "Leases renewed at least every TTL/3 cost no Raft writes in steady
// state", and right after a Promote every lease is checkpointed once.
func TestCheckpointSteadyStateRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, ttl = 200, 3000
		le := newTest(t, Config{})
		for i := LeaseID(1); i <= n; i++ {
			mustGrant(t, le, i, ttl)
		}
		le.Promote(time.Second)
		count := map[LeaseID]int{}
		resets := 0
		for round := 0; round < 30; round++ { // 10 TTLs
			time.Sleep(ttl / 3 * time.Millisecond)
			synctest.Wait()
			cps := flatten(drainCheckpoints(le))
			for _, cp := range cps {
				count[cp.ID]++
				if cp.Remaining <= 0 || cp.Remaining > ttl {
					t.Fatalf("checkpoint %+v out of range", cp)
				}
			}
			le.Checkpoint(cps) // replicated and applied
			for i := LeaseID(1); i <= n; i++ {
				if _, err := le.Renew(i); errors.Is(err, ErrResetRequired) {
					resets++
					le.Checkpoint([]Checkpoint{{ID: i}})
					if _, err := le.Renew(i); err != nil {
						t.Fatalf("Renew(%d) after its reset = %v", i, err)
					}
				} else if err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := LeaseID(1); i <= n; i++ {
			if count[i] != 1 {
				t.Errorf("lease %d checkpointed %d times, want once (after Promote)", i, count[i])
			}
		}
		if resets != n {
			t.Errorf("%d resets, want %d (one per post-Promote checkpoint)", resets, n)
		}
	})
}

// Rule 3: after Promote every lease without a remainder is checkpointed
// once; a lease that already has one is not.
func TestCheckpointAfterPromote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 2500 // more than one batch
		le := newTest(t, Config{})
		for i := LeaseID(1); i <= n; i++ {
			mustGrant(t, le, i, 60_000)
		}
		le.Checkpoint([]Checkpoint{{ID: 7, Remaining: 40_000}})
		time.Sleep(time.Second)
		le.Promote(time.Second)
		promoted := time.Now()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		batches := drainCheckpoints(le)
		seen := map[LeaseID]Checkpoint{}
		for _, b := range batches {
			if len(b) > DefaultBatchSize {
				t.Fatalf("checkpoint batch of %d", len(b))
			}
			for _, cp := range b {
				if _, dup := seen[cp.ID]; dup {
					t.Fatalf("lease %d checkpointed twice", cp.ID)
				}
				seen[cp.ID] = cp
			}
		}
		if len(seen) != n-1 {
			t.Fatalf("%d leases checkpointed after Promote, want %d", len(seen), n-1)
		}
		if _, ok := seen[7]; ok {
			t.Fatal("lease with a remainder checkpointed again")
		}
		for _, cp := range seen {
			// The remainder counts from the promote, without the extension:
			// 60 s less the time the checkpoint waited for the rate limiter.
			if cp.Remaining > 60_000 || cp.Remaining < 60_000-200 {
				t.Fatalf("post-Promote checkpoint %+v, want about 60000 ms", cp)
			}
		}
		_ = promoted
		// Not applied: offered again after RetryInterval, still once per round.
		time.Sleep(DefaultRetryInterval)
		synctest.Wait()
		if got := len(flatten(drainCheckpoints(le))); got != n-1 {
			t.Fatalf("%d checkpoints re-offered after RetryInterval, want %d", got, n-1)
		}
	})
}

// Rule 3: "Each node notes on its own monotonic clock when it applied a
// checkpoint; a new leader sets a checkpointed lease's expiry to that apply
// time + the remainder (+ extend)". Rule 1: the note is not replicated state.
func TestCheckpointApplyTimeOnNewPrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTest(t, Config{})
		b := newTest(t, Config{})
		a.Promote(0) // before the grants: no post-Promote round
		for _, le := range []*lessor{a, b} {
			mustGrant(t, le, 1, 4000)
			mustGrant(t, le, 2, 4000)
		}
		if _, err := a.Renew(2); err != nil { // renewed: no remainder
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		cps := flatten(drainCheckpoints(a))
		if len(cps) != 2 {
			t.Fatalf("checkpoints = %+v, want one per lease", cps)
		}
		// Replicated: a applies now, b 300 ms later.
		a.Checkpoint(cps)
		time.Sleep(300 * time.Millisecond)
		b.Checkpoint(cps)
		bApplied := time.Now()
		var rem1 int64
		for _, cp := range cps {
			if cp.ID == 1 {
				rem1 = cp.Remaining
			}
		}
		if rem1 != 2000 {
			t.Fatalf("lease 1 remainder %d, want 2000", rem1)
		}
		if sa, sb := a.State(), b.State(); !equalStates(sa, sb) {
			t.Fatalf("replicas differ after the same checkpoints:\n%+v\n%+v", sa, sb)
		}
		// The primary fails; b takes over later, with a remainder of 2 s
		// noted 1 s ago.
		time.Sleep(time.Second)
		a.Demote()
		c := collect(t, b)
		const extend = 500 * time.Millisecond
		b.Promote(extend)
		want := bApplied.Add(2*time.Second + extend)
		if got := expiryOf(b, b.Lookup(1)); !got.Equal(want) {
			t.Fatalf("new primary expires lease 1 at apply%+v, want apply+remainder+extend = apply%+v", got.Sub(bApplied), want.Sub(bApplied))
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if at, ok := c.firstTime(1); !ok || !at.Equal(want) {
			t.Fatalf("lease 1 delivered at apply%+v (ok=%v), want apply%+v", at.Sub(bApplied), ok, want.Sub(bApplied))
		}
	})
}

func equalStates(a, b []LeaseState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].TTL != b[i].TTL || a[i].Remaining != b[i].Remaining || a[i].Gen != b[i].Gen ||
			a[i].Owner != b[i].Owner || len(a[i].Keys) != len(b[i].Keys) {
			return false
		}
		for j := range a[i].Keys {
			if a[i].Keys[j] != b[i].Keys[j] {
				return false
			}
		}
	}
	return true
}

// Rule 3: "A renewal of a lease that has a checkpointed remainder first
// replicates the reset, then acknowledges, so rule 2 holds." Renew returns
// ErrResetRequired while a checkpoint is in flight or applied; a reset lets
// it proceed, and a checkpoint computed before the reset (an older Gen) is
// ignored, so it can never shrink the renewed lease on this or a later
// primary.
func TestResetRequiredAndStaleCheckpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTest(t, Config{})
		b := newTest(t, Config{})
		a.Promote(0)
		for _, le := range []*lessor{a, b} {
			mustGrant(t, le, 1, 4000)
		}
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		cps := flatten(drainCheckpoints(a))
		if len(cps) != 1 || cps[0].Gen != 0 {
			t.Fatalf("checkpoints = %+v", cps)
		}
		stale := cps[0]
		// In flight, not applied yet.
		if _, err := a.Renew(1); !errors.Is(err, ErrResetRequired) {
			t.Fatalf("Renew with a checkpoint in flight = %v, want ErrResetRequired", err)
		}
		// Applied.
		a.Checkpoint(cps)
		b.Checkpoint(cps)
		if _, err := a.Renew(1); !errors.Is(err, ErrResetRequired) {
			t.Fatalf("Renew with a remainder = %v, want ErrResetRequired", err)
		}
		// Reset replicated, then renew.
		for _, le := range []*lessor{a, b} {
			le.Checkpoint([]Checkpoint{{ID: 1, Remaining: 0}})
		}
		if _, err := a.Renew(1); err != nil {
			t.Fatalf("Renew after the reset = %v", err)
		}
		for _, le := range []*lessor{a, b} {
			st := le.State()
			if st[0].Remaining != 0 || st[0].Gen != 1 {
				t.Fatalf("state after reset = %+v, want Remaining 0 Gen 1", st[0])
			}
		}
		// A stale checkpoint (a retry from before the reset) arrives late.
		time.Sleep(100 * time.Millisecond)
		for _, le := range []*lessor{a, b} {
			le.Checkpoint([]Checkpoint{stale})
			if st := le.State(); st[0].Remaining != 0 || st[0].Gen != 1 {
				t.Fatalf("stale checkpoint applied: %+v", st[0])
			}
		}
		if _, err := a.Renew(1); err != nil {
			t.Fatalf("Renew after a stale checkpoint = %v", err)
		}
		renewed := time.Now()
		// b takes over immediately: the renewed lease must last until the
		// renewal + TTL, not stale apply time + 1.5 s.
		a.Demote()
		c := collect(t, b)
		b.Promote(0)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		at, ok := c.firstTime(1)
		if !ok || at.Before(renewed.Add(4*time.Second)) {
			t.Fatalf("lease delivered at renewal%+v (ok=%v), before renewal + TTL", at.Sub(renewed), ok)
		}
		// A current-Gen checkpoint does apply.
		b.Checkpoint([]Checkpoint{{ID: 1, Remaining: 10, Gen: 1}})
		if st := b.State(); st[0].Remaining != 10 {
			t.Fatalf("current-Gen checkpoint ignored: %+v", st[0])
		}
		// And unknown leases are ignored.
		b.Checkpoint([]Checkpoint{{ID: 99, Remaining: 10}, {ID: 98}})
		if len(b.State()) != 1 {
			t.Fatal("checkpoint created a lease")
		}
	})
}

// A checkpoint yielded but never applied (the proposal failed) is offered
// again after RetryInterval with a fresh remainder and the same Gen; once it
// applies it is not offered again.
func TestCheckpointRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{RetryInterval: 400 * time.Millisecond})
		le.Promote(0)
		mustGrant(t, le, 1, 4000)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		first := flatten(drainCheckpoints(le))
		time.Sleep(400 * time.Millisecond)
		synctest.Wait()
		second := flatten(drainCheckpoints(le))
		if len(first) != 1 || len(second) != 1 || first[0].Remaining != 2000 || second[0].Remaining != 1600 || second[0].Gen != first[0].Gen {
			t.Fatalf("first %+v, retry %+v", first, second)
		}
		le.Checkpoint(second)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := drainCheckpoints(le); len(got) != 0 {
			t.Fatalf("offered again after applying: %+v", got)
		}
	})
}
