package lessor

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value takes defaults", Config{}, true},
		{"explicit", Config{MinTTL: time.Second, MaxTTL: time.Hour, RevokeRate: 10, BatchSize: 5, RetryInterval: time.Millisecond}, true},
		{"MinTTL 1ms", Config{MinTTL: time.Millisecond}, true},
		{"MinTTL below 1ms", Config{MinTTL: time.Microsecond}, false},
		{"MinTTL negative", Config{MinTTL: -time.Second}, false},
		{"MaxTTL below MinTTL", Config{MinTTL: 2 * time.Second, MaxTTL: time.Second}, false},
		{"MaxTTL below default MinTTL", Config{MaxTTL: time.Second}, false},
		{"MaxTTL equal MinTTL", Config{MinTTL: time.Second, MaxTTL: time.Second}, true},
		{"MaxTTL at the ceiling", Config{MaxTTL: TTLCeiling}, true},
		{"MaxTTL above the ceiling", Config{MaxTTL: TTLCeiling + time.Millisecond}, false},
		{"RevokeRate negative", Config{RevokeRate: -1}, false},
		{"BatchSize negative", Config{BatchSize: -1}, false},
		{"RetryInterval negative", Config{RetryInterval: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			le, err := NewLessor(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("NewLessor() = %v, want ok=%v", err, tt.ok)
			}
			if le != nil {
				le.Stop()
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.MinTTL != DefaultMinTTL || c.MaxTTL != DefaultMaxTTL || c.RevokeRate != DefaultRevokeRate ||
		c.BatchSize != DefaultBatchSize || c.RetryInterval != DefaultRetryInterval || c.Clock == nil {
		t.Fatalf("withDefaults() = %+v", c)
	}
}

func TestLookupLeases(t *testing.T) {
	le := newTest(t, Config{})
	if le.Lookup(1) != nil {
		t.Fatal("Lookup on an empty lessor found a lease")
	}
	if got := le.Leases(); len(got) != 0 {
		t.Fatalf("Leases() = %v, want none", got)
	}
	for _, id := range []LeaseID{5, 3, 9, 1, 7} {
		mustGrant(t, le, id, 2000)
	}
	if err := le.Revoke(9); err != nil {
		t.Fatal(err)
	}
	var ids []LeaseID
	for _, l := range le.Leases() {
		ids = append(ids, l.ID)
	}
	if want := []LeaseID{1, 3, 5, 7}; !slices.Equal(ids, want) {
		t.Fatalf("Leases() = %v, want %v (sorted by ID)", ids, want)
	}
	if le.Lookup(9) != nil {
		t.Fatal("Lookup found a revoked lease")
	}
}

func TestRevokeUnknown(t *testing.T) {
	le := newTest(t, Config{})
	if err := le.Revoke(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Revoke(unknown) = %v, want ErrLeaseNotFound", err)
	}
	mustGrant(t, le, 1, 2000)
	if err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	if err := le.Revoke(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("second Revoke = %v, want ErrLeaseNotFound", err)
	}
}

func TestAttachGetLease(t *testing.T) {
	le := newTest(t, Config{})
	mustGrant(t, le, 1, 2000)
	mustGrant(t, le, 2, 2000)
	if err := le.Attach(3, items("a")); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Attach to unknown lease = %v, want ErrLeaseNotFound", err)
	}
	if err := le.Attach(1, items("b", "a")); err != nil {
		t.Fatal(err)
	}
	// Re-attaching to the holder succeeds.
	if err := le.Attach(1, items("a")); err != nil {
		t.Fatalf("re-attach to the holder = %v", err)
	}
	if got := le.GetLease(LeaseItem{"a"}); got != 1 {
		t.Fatalf("GetLease(a) = %d, want 1", got)
	}
	if got := le.GetLease(LeaseItem{"zz"}); got != NoLease {
		t.Fatalf("GetLease(unattached) = %d, want NoLease", got)
	}
	if got := le.Lookup(1).Keys(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Keys() = %v, want [a b]", got)
	}
	if err := le.Attach(1, items("c", "")); !errors.Is(err, ErrInvalidItem) {
		t.Fatalf("Attach with an empty key = %v, want ErrInvalidItem", err)
	}
	if le.GetLease(LeaseItem{"c"}) != NoLease {
		t.Fatal("a failed Attach attached an item")
	}
	if err := le.Attach(1, nil); err != nil {
		t.Fatalf("Attach(no items) = %v", err)
	}
}

// An item belongs to at most one lease; a multi-item Attach that meets an
// item held elsewhere changes nothing.
func TestAttachHeldAllOrNothing(t *testing.T) {
	le := newTest(t, Config{})
	mustGrant(t, le, 1, 2000)
	mustGrant(t, le, 2, 2000)
	if err := le.Attach(1, items("x")); err != nil {
		t.Fatal(err)
	}
	err := le.Attach(2, items("a", "b", "x", "c"))
	if !errors.Is(err, ErrItemHeld) {
		t.Fatalf("Attach of a held item = %v, want ErrItemHeld", err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if got := le.GetLease(LeaseItem{k}); got != NoLease {
			t.Errorf("after failed Attach, GetLease(%s) = %d, want NoLease", k, got)
		}
	}
	if got := le.GetLease(LeaseItem{"x"}); got != 1 {
		t.Errorf("GetLease(x) = %d, want 1", got)
	}
	if got := le.Lookup(2).Keys(); len(got) != 0 {
		t.Errorf("lease 2 keys = %v, want none", got)
	}
	if got := le.Lookup(1).Keys(); !slices.Equal(got, []string{"x"}) {
		t.Errorf("lease 1 keys = %v, want [x]", got)
	}
}

func TestDetach(t *testing.T) {
	le := newTest(t, Config{})
	mustGrant(t, le, 1, 2000)
	mustGrant(t, le, 2, 2000)
	if err := le.Attach(1, items("a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := le.Attach(2, items("x")); err != nil {
		t.Fatal(err)
	}
	if err := le.Detach(3, items("a")); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("Detach from unknown lease = %v, want ErrLeaseNotFound", err)
	}
	if err := le.Detach(1, items("a", "nope")); !errors.Is(err, ErrItemNotFound) {
		t.Errorf("Detach of an unattached item = %v, want ErrItemNotFound", err)
	}
	if err := le.Detach(1, items("a", "x")); !errors.Is(err, ErrItemHeld) {
		t.Errorf("Detach of another lease's item = %v, want ErrItemHeld", err)
	}
	// Both failures changed nothing.
	if got := le.Lookup(1).Keys(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after failed Detach, keys = %v, want [a b]", got)
	}
	if got := le.GetLease(LeaseItem{"x"}); got != 2 {
		t.Fatalf("GetLease(x) = %d, want 2", got)
	}
	if err := le.Detach(1, items("a")); err != nil {
		t.Fatal(err)
	}
	if got := le.GetLease(LeaseItem{"a"}); got != NoLease {
		t.Fatalf("GetLease(a) after Detach = %d", got)
	}
	if got := le.Lookup(1).Keys(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("keys = %v, want [b]", got)
	}
	// A detached item may go to another lease.
	if err := le.Attach(2, items("a")); err != nil {
		t.Fatal(err)
	}
}

// Revoke deletes the lease and its items, in sorted key order, through the
// RangeDeleter, one transaction ended once.
func TestRevokeDeletesItems(t *testing.T) {
	le := newTest(t, Config{})
	var d recDeleter
	le.SetRangeDeleter(d.deleter())
	mustGrant(t, le, 1, 2000)
	mustGrant(t, le, 2, 2000)
	if err := le.Attach(1, items("m", "a/b", "z", "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := le.Attach(2, items("other")); err != nil {
		t.Fatal(err)
	}
	l := le.Lookup(1)
	if err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a/b", "b", "m", "z"}; !slices.Equal(d.keys, want) {
		t.Fatalf("deleted %v, want %v", d.keys, want)
	}
	if d.txns != 1 || d.ends != 1 {
		t.Fatalf("txns=%d ends=%d, want 1 and 1", d.txns, d.ends)
	}
	for _, k := range []string{"m", "a/b", "z", "a", "b"} {
		if got := le.GetLease(LeaseItem{k}); got != NoLease {
			t.Errorf("GetLease(%s) = %d after Revoke, want NoLease", k, got)
		}
	}
	if got := le.GetLease(LeaseItem{"other"}); got != 2 {
		t.Errorf("GetLease(other) = %d, want 2", got)
	}
	if le.Lookup(1) != nil {
		t.Error("Lookup found the revoked lease")
	}
	if got := l.Keys(); len(got) != 0 {
		t.Errorf("revoked lease still reports keys %v", got)
	}
	if got := l.Remaining(); got != 0 {
		t.Errorf("revoked lease Remaining() = %v, want 0", got)
	}
	if err := le.Attach(1, items("q")); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("Attach to revoked lease = %v", err)
	}
	// The revoked lease's items are free again.
	if err := le.Attach(2, items("a")); err != nil {
		t.Errorf("Attach of a freed item = %v", err)
	}
}

func TestRevokeWithoutDeleter(t *testing.T) {
	le := newTest(t, Config{})
	mustGrant(t, le, 1, 2000)
	if err := le.Attach(1, items("a")); err != nil {
		t.Fatal(err)
	}
	if err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	if got := le.GetLease(LeaseItem{"a"}); got != NoLease {
		t.Fatalf("GetLease = %d, want NoLease", got)
	}
}

// Renew is a primary's business: a lessor that was never promoted, or has
// been demoted, refuses it.
func TestRenewNotPrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		mustGrant(t, le, 1, 2000)
		if le.IsPrimary() {
			t.Fatal("a new lessor is primary")
		}
		if _, err := le.Renew(1); !errors.Is(err, ErrNotPrimary) {
			t.Fatalf("Renew on a new lessor = %v, want ErrNotPrimary", err)
		}
		le.Promote(0)
		if !le.IsPrimary() {
			t.Fatal("not primary after Promote")
		}
		if ttl, err := renewReset(le, 1); err != nil || ttl != 2000 {
			t.Fatalf("Renew on primary = %d, %v", ttl, err)
		}
		if _, err := le.Renew(2); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("Renew(unknown) = %v, want ErrLeaseNotFound", err)
		}
		le.Demote()
		if le.IsPrimary() {
			t.Fatal("primary after Demote")
		}
		if _, err := le.Renew(1); !errors.Is(err, ErrNotPrimary) {
			t.Fatalf("Renew after Demote = %v, want ErrNotPrimary", err)
		}
	})
}

// Remaining: the full TTL on a non-primary without a checkpoint; the time to
// expiry on a primary; apply time + remainder elsewhere.
func TestRemaining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		l := mustGrant(t, le, 1, 4000)
		time.Sleep(time.Second)
		if got := l.Remaining(); got != 4*time.Second {
			t.Fatalf("follower Remaining() = %v, want the TTL 4s", got)
		}
		le.Checkpoint([]Checkpoint{{ID: 1, Remaining: 3000}})
		time.Sleep(time.Second)
		if got := l.Remaining(); got != 2*time.Second {
			t.Fatalf("follower Remaining() 1s after a 3s checkpoint = %v, want 2s", got)
		}
		le.Promote(500 * time.Millisecond)
		if got := l.Remaining(); got != 2500*time.Millisecond {
			t.Fatalf("primary Remaining() = %v, want 2.5s (remainder + extend)", got)
		}
		le.Checkpoint([]Checkpoint{{ID: 1, Remaining: 0}})
		if _, err := le.Renew(1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if got := l.Remaining(); got != 3*time.Second {
			t.Fatalf("primary Remaining() 1s after Renew = %v, want 3s", got)
		}
		var fake FakeLessor
		fl, _ := fake.Grant(7, 1234)
		if fl.Remaining() != 1234*time.Millisecond || fl.Keys() != nil {
			t.Fatalf("FakeLessor lease: Remaining %v Keys %v", fl.Remaining(), fl.Keys())
		}
	})
}

func TestFakeLessor(t *testing.T) {
	var le Lessor = &FakeLessor{}
	l, err := le.Grant(3, 5000)
	if err != nil || l.ID != 3 || l.TTL() != 5000 {
		t.Fatalf("FakeLessor.Grant = %+v, %v", l, err)
	}
	if le.Lookup(3) != nil || le.GetLease(LeaseItem{"a"}) != NoLease || le.IsPrimary() || le.Expired(3) {
		t.Fatal("FakeLessor found something")
	}
	if le.Revoke(3) != nil || le.Attach(3, items("a")) != nil || le.Detach(3, items("a")) != nil || le.Recover(nil, nil) != nil {
		t.Fatal("FakeLessor returned an error")
	}
	le.Promote(time.Second)
	le.Demote()
	le.Checkpoint(nil)
	le.SetRangeDeleter(nil)
	le.Stop()
}

// Stop ends the goroutines (goleak in TestMain checks) and may be called
// twice, also while a Promote sweep runs.
func TestStopTwice(t *testing.T) {
	le := newLessor(Config{})
	le.sweepSize = 2
	for i := LeaseID(1); i <= 100; i++ {
		mustGrant(t, le, i, 2000)
	}
	le.Promote(time.Second)
	le.Stop()
	le.Stop()
	// Calls after Stop do not hang.
	mustGrant(t, le, 1000, 2000)
	if _, err := renewReset(le, 1000); err != nil {
		t.Fatal(err)
	}
}

// RenewAll answers each renewal exactly as Renew would (renewed, unknown,
// expired, reset required, not primary), across more renewals than one lock
// hold takes, and leaves every lease with the same expiry.
func TestRenewAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		one, all := newTest(t, Config{}), newTest(t, Config{})
		var ids []LeaseID
		for id := LeaseID(1); id <= 300; id++ {
			ids = append(ids, id, id) // each twice: chunks split some pairs
		}
		ids = append(ids, 999) // unknown
		setup := func(le *lessor) {
			for id := LeaseID(1); id <= 300; id++ {
				ttl := int64(10_000)
				if id == 2 {
					ttl = 1500
				}
				mustGrant(t, le, id, ttl)
			}
			le.Checkpoint([]Checkpoint{{ID: 3, Remaining: 5000}})
		}
		setup(one)
		setup(all)
		check := func(when string) {
			t.Helper()
			rs := make([]Renewal, len(ids))
			for i, id := range ids {
				rs[i].ID = id
			}
			all.RenewAll(rs)
			for i, id := range ids {
				ttl, err := one.Renew(id)
				if rs[i].ID != id || rs[i].TTL != ttl || !errors.Is(rs[i].Err, err) || (err == nil) != (rs[i].Err == nil) {
					t.Fatalf("%s: renewal %d of lease %d: RenewAll %+v, Renew (%d, %v)", when, i, id, rs[i], ttl, err)
				}
			}
			for id := LeaseID(1); id <= 300; id++ {
				if a, b := one.Lookup(id), all.Lookup(id); (a == nil) != (b == nil) || (a != nil && a.Remaining() != b.Remaining()) {
					t.Fatalf("%s: lease %d remaining %v by Renew, %v by RenewAll", when, id, a.Remaining(), b.Remaining())
				}
			}
		}
		check("not primary")
		one.Promote(0)
		all.Promote(0)
		time.Sleep(2 * time.Second) // lease 2 has expired
		synctest.Wait()
		check("primary")
		if _, err := one.Renew(2); !errors.Is(err, ErrLeaseExpired) {
			t.Fatalf("lease 2 did not expire: %v", err)
		}
		if _, err := one.Renew(3); !errors.Is(err, ErrResetRequired) {
			t.Fatalf("lease 3 needs no reset: %v", err)
		}
	})
}
