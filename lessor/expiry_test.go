package lessor

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of expiry on a primary. Each is tied to a rule of ARCHITECTURE.md
// ("Time and safety rules") or to a sentence of the Data flow section.

// Data flow, Renew: "The leader's lessor resets the lease's expiry in memory."
// Rule 2: a lease renewed at s is not expired before s + TTL.
func TestRenewResetsExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		le.Promote(0)
		start := time.Now()
		l := mustGrant(t, le, 1, 2000)
		c := collect(t, le)
		// Before TTL/2 no checkpoint is in flight: a plain Renew succeeds.
		time.Sleep(900 * time.Millisecond)
		ttl, err := le.Renew(1)
		if err != nil || ttl != 2000 {
			t.Fatalf("Renew = %d, %v", ttl, err)
		}
		renewed := time.Now()
		if got := l.Remaining(); got != 2*time.Second {
			t.Fatalf("Remaining() right after Renew = %v, want 2s", got)
		}
		if got, want := expiryOf(le, l), renewed.Add(2*time.Second); !got.Equal(want) {
			t.Fatalf("expiry = %v after start, want %v", got.Sub(start), want.Sub(start))
		}
		time.Sleep(2*time.Second - time.Millisecond)
		synctest.Wait()
		if _, ok := c.firstTime(1); ok {
			t.Fatal("delivered before renewal + TTL")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		at, ok := c.firstTime(1)
		if !ok || !at.Equal(renewed.Add(2*time.Second)) {
			t.Fatalf("delivered at %v (ok=%v), want exactly renewal + TTL = %v", at.Sub(start), ok, renewed.Add(2*time.Second).Sub(start))
		}
	})
}

// Data flow, Expiry: the heap yields expired leases to ExpiredLeasesC in
// batches of at most BatchSize; rule 2: never before their expiry.
func TestExpiryBatchesNotEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 95
		le := newTest(t, Config{BatchSize: 10})
		le.Promote(0)
		c := collect(t, le)
		start := time.Now()
		deadline := map[LeaseID]time.Time{}
		for i := LeaseID(1); i <= n; i++ {
			ttl := 100 + int64(i%7)*50
			mustGrant(t, le, i, ttl)
			deadline[i] = time.Now().Add(ms(ttl))
			if i%10 == 0 {
				time.Sleep(13 * time.Millisecond)
			}
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if c.count() != n {
			t.Fatalf("%d leases delivered, want %d", c.count(), n)
		}
		for id, d := range deadline {
			at, _ := c.firstTime(id)
			if at.Before(d) {
				t.Errorf("lease %d delivered at %v, before its expiry %v", id, at.Sub(start), d.Sub(start))
			}
			if at.After(d.Add(20 * time.Millisecond)) {
				t.Errorf("lease %d delivered at %v, %v after its expiry", id, at.Sub(start), at.Sub(d))
			}
		}
		for _, b := range c.allBatches() {
			if len(b) == 0 || len(b) > 10 {
				t.Errorf("batch of %d leases, want 1..10", len(b))
			}
		}
	})
}

// Data flow, Expiry: "Followers never expire anything." A lessor that was
// never promoted, or was demoted, delivers nothing, also not what it had
// queued before the Demote.
func TestDemotedNeverDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		never := newTest(t, Config{BatchSize: 1, RetryInterval: 100 * time.Millisecond})
		le := newTest(t, Config{BatchSize: 1, RetryInterval: 100 * time.Millisecond})
		le.Promote(0)
		for i := LeaseID(1); i <= 40; i++ {
			mustGrant(t, never, i, 1500)
			mustGrant(t, le, i, 1500)
		}
		// No reader: the channel fills with batches of expired leases.
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if got := len(le.ExpiredLeasesC()); got == 0 {
			t.Fatal("primary queued nothing")
		}
		le.Demote()
		if got := len(le.ExpiredLeasesC()); got != 0 {
			t.Fatalf("%d batches still queued after Demote", got)
		}
		c1, c2 := collect(t, le), collect(t, never)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if c1.count() != 0 || c2.count() != 0 {
			t.Fatalf("demoted lessor delivered %d leases, never-promoted %d", c1.count(), c2.count())
		}
		for i := LeaseID(1); i <= 40; i++ {
			if le.Expired(i) || never.Expired(i) {
				t.Fatalf("Expired(%d) is true on a non-primary", i)
			}
		}
		if len(le.CheckpointsC()) != 0 || len(never.CheckpointsC()) != 0 {
			t.Fatal("a non-primary queued checkpoints")
		}
	})
}

// Data flow, Expiry: the server "retries failures": an expired lease is
// offered again every RetryInterval until it is revoked, never after.
func TestExpiredOfferedAgainUntilRevoked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{RetryInterval: 300 * time.Millisecond})
		le.Promote(0)
		c := collect(t, le)
		mustGrant(t, le, 1, 1500)
		exp := time.Now().Add(1500 * time.Millisecond)
		time.Sleep(1500*time.Millisecond + 700*time.Millisecond)
		synctest.Wait()
		got := c.deliveries(1)
		want := []time.Time{exp, exp.Add(300 * time.Millisecond), exp.Add(600 * time.Millisecond)}
		if len(got) != len(want) {
			t.Fatalf("delivered %d times by expiry+700ms, want 3", len(got))
		}
		for i := range want {
			if !got[i].Equal(want[i]) {
				t.Errorf("delivery %d at expiry%+v, want expiry%+v", i, got[i].Sub(exp), want[i].Sub(exp))
			}
		}
		if !le.Expired(1) {
			t.Fatal("Expired(1) = false after delivery")
		}
		if err := le.Revoke(1); err != nil {
			t.Fatal(err)
		}
		if le.Expired(1) {
			t.Fatal("Expired is true for a revoked lease")
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := len(c.deliveries(1)); n != 3 {
			t.Fatalf("delivered %d times, want no more after the Revoke", n)
		}
	})
}

// Data flow, Expiry: the lessor never blocks on a slow reader: Renew and
// Grant keep working while ExpiredLeasesC is full, and nothing is lost.
func TestSlowReaderNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{BatchSize: 1})
		le.Promote(0)
		const n = 100
		for i := LeaseID(1); i <= n; i++ {
			mustGrant(t, le, i, 1500)
		}
		mustGrant(t, le, 1000, 60_000)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := len(le.ExpiredLeasesC()); got != cap(le.ExpiredLeasesC()) {
			t.Fatalf("channel holds %d batches, want it full (%d)", got, cap(le.ExpiredLeasesC()))
		}
		// A blocked lessor would deadlock the bubble here.
		for i := 0; i < 50; i++ {
			if _, err := renewReset(le, 1000); err != nil {
				t.Fatal(err)
			}
			mustGrant(t, le, LeaseID(2000+i), 60_000)
			le.Lookup(1)
			le.Expired(1)
			time.Sleep(100 * time.Millisecond)
		}
		c := collect(t, le)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		for i := LeaseID(1); i <= n; i++ {
			if _, ok := c.firstTime(i); !ok {
				t.Errorf("lease %d never delivered after the reader came back", i)
			}
		}
	})
}

// Data flow, Expiry: "Once a primary has seen a lease expire, Renew refuses
// it" (doc.go), and Expired is the check before proposing its revoke.
func TestRenewExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		mustGrant(t, le, 1, 1500)
		le.Promote(0)
		if le.Expired(1) || le.Expired(99) {
			t.Fatal("Expired before expiry or for an unknown lease")
		}
		time.Sleep(1500*time.Millisecond - 1)
		if le.Expired(1) {
			t.Fatal("Expired 1ns before expiry")
		}
		if _, err := renewReset(le, 1); err != nil {
			t.Fatalf("Renew 1ns before expiry = %v", err)
		}
		time.Sleep(1500 * time.Millisecond)
		// Expired does not wait for the delivery.
		if !le.Expired(1) {
			t.Fatal("Expired(1) = false at its expiry")
		}
		if _, err := le.Renew(1); !errors.Is(err, ErrLeaseExpired) {
			t.Fatalf("Renew of an expired lease = %v, want ErrLeaseExpired", err)
		}
		// A reset does not bring it back.
		le.Checkpoint([]Checkpoint{{ID: 1}})
		if _, err := le.Renew(1); !errors.Is(err, ErrLeaseExpired) {
			t.Fatalf("Renew of an expired lease after reset = %v, want ErrLeaseExpired", err)
		}
		// A new primary term starts the lease over (rule 3).
		le.Demote()
		if le.Expired(1) {
			t.Fatal("Expired on a demoted lessor")
		}
		le.Promote(0)
		if le.Expired(1) {
			t.Fatal("Expired right after a new Promote")
		}
		if _, err := renewReset(le, 1); err != nil {
			t.Fatalf("Renew in the next term = %v", err)
		}
	})
}

// Data flow, Expiry: delivery is rate-limited. 5000 leases expiring together
// at RevokeRate 1000/s take about 5 s of fake time to deliver, not less
// (less one batch, the token bucket's burst).
func TestRevokeRateLimitsDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, rate, batch = 5000, 1000, 100
		le := newTest(t, Config{RevokeRate: rate, BatchSize: batch})
		le.Promote(0)
		c := collect(t, le)
		for i := LeaseID(1); i <= n; i++ {
			mustGrant(t, le, i, 1500)
		}
		exp := time.Now().Add(1500 * time.Millisecond)
		time.Sleep(1500*time.Millisecond + 10*time.Second)
		synctest.Wait()
		if c.count() != n {
			t.Fatalf("%d delivered, want %d", c.count(), n)
		}
		var last time.Time
		perSecond := map[int]int{}
		for i := LeaseID(1); i <= n; i++ {
			at, _ := c.firstTime(i)
			if at.Before(exp) {
				t.Fatalf("lease %d delivered early", i)
			}
			if at.After(last) {
				last = at
			}
			perSecond[int(at.Sub(exp)/time.Second)]++
		}
		took := last.Sub(exp)
		min := time.Duration(n-batch) * time.Second / rate
		if took < min || took > min+100*time.Millisecond {
			t.Fatalf("delivering %d expiries took %v, want %v..%v", n, took, min, min+100*time.Millisecond)
		}
		for s, k := range perSecond {
			if k > rate+batch {
				t.Errorf("second %d delivered %d leases, rate allows %d (+%d burst)", s, k, rate, batch)
			}
		}
		t.Logf("%d simultaneous expiries at %d/s delivered in %v of fake time", n, rate, took)
	})
}

// Rule 2 with rule 3: after Promote(extend) every lease expires no earlier
// than promote time + extend + TTL, or, when it has a checkpointed
// remainder, than that checkpoint's apply time + remainder + extend.
func TestPromoteNoEarlyExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		c := collect(t, le)
		start := time.Now()
		want := map[LeaseID]time.Time{}
		for i := LeaseID(1); i <= 60; i++ {
			mustGrant(t, le, i, 1500+int64(i)*37)
			time.Sleep(10 * time.Millisecond)
		}
		// A third of the leases get a checkpoint at different times.
		applied := map[LeaseID]time.Time{}
		for i := LeaseID(1); i <= 60; i += 3 {
			le.Checkpoint([]Checkpoint{{ID: i, Remaining: 200 + int64(i)*100}})
			applied[i] = time.Now()
			time.Sleep(20 * time.Millisecond)
		}
		const extend = 700 * time.Millisecond
		promoted := time.Now()
		le.Promote(extend)
		for i := LeaseID(1); i <= 60; i++ {
			if at, ok := applied[i]; ok {
				want[i] = at.Add(ms(200+int64(i)*100) + extend)
			} else {
				want[i] = promoted.Add(ms(1500+int64(i)*37) + extend)
			}
		}
		for id, w := range want {
			if got := expiryOf(le, le.Lookup(id)); !got.Equal(w) {
				t.Errorf("lease %d scheduled for %v, want %v", id, got.Sub(start), w.Sub(start))
			}
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		for id, w := range want {
			at, ok := c.firstTime(id)
			if !ok || at.Before(w) || at.After(w.Add(15*time.Millisecond)) {
				t.Errorf("lease %d delivered at %v (ok=%v), want at %v", id, at.Sub(start), ok, w.Sub(start))
			}
		}
	})
}

// Rule 5: "spread expiries that pile up after a promote": many leases due
// together are moved only later, never earlier, and no slot of BatchSize /
// RevokeRate receives more than the rate allows.
func TestPromoteSpreadsExpiries(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cfg          Config
		leases       int
		ttls         []int64
		checkDeliver bool
	}{
		{"low rate", Config{RevokeRate: 1000, BatchSize: 100}, 5000, []int64{1500}, true},
		{"low rate mixed TTLs", Config{RevokeRate: 1000, BatchSize: 100}, 3000, []int64{1500, 1600, 1700, 4000}, true},
		{"default rate", Config{}, 20000, []int64{2000}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := tc.cfg.withDefaults()
				le := newTest(t, tc.cfg)
				for i := 1; i <= tc.leases; i++ {
					mustGrant(t, le, LeaseID(i), tc.ttls[i%len(tc.ttls)])
				}
				var c *collector
				if tc.checkDeliver {
					c = collect(t, le)
				}
				const extend = time.Second
				promoted := time.Now()
				le.Promote(extend)
				synctest.Wait()
				width := time.Duration(cfg.BatchSize) * time.Second / time.Duration(cfg.RevokeRate)
				allowed := cfg.BatchSize // = RevokeRate x width
				slots := map[int64]int{}
				var latest time.Time
				for i := 1; i <= tc.leases; i++ {
					l := le.Lookup(LeaseID(i))
					honest := promoted.Add(ms(l.TTL()) + extend)
					got := expiryOf(le, l)
					if got.Before(honest) {
						t.Fatalf("lease %d moved earlier: %v before %v", i, honest.Sub(got), honest.Sub(promoted))
					}
					slots[int64(got.Sub(le.base)/width)]++
					if got.After(latest) {
						latest = got
					}
				}
				maxSlot := 0
				for _, k := range slots {
					maxSlot = max(maxSlot, k)
				}
				if maxSlot > allowed {
					t.Fatalf("a %v slot holds %d expiries, the rate allows %d", width, maxSlot, allowed)
				}
				t.Logf("%d leases over %d slots of %v, at most %d per slot (allowed %d), last %v after the earliest",
					tc.leases, len(slots), width, maxSlot, allowed, latest.Sub(promoted.Add(ms(tc.ttls[0])+extend)))
				if !tc.checkDeliver {
					return
				}
				time.Sleep(latest.Sub(time.Now()) + 5*time.Second)
				synctest.Wait()
				if c.count() != tc.leases {
					t.Fatalf("%d delivered, want %d", c.count(), tc.leases)
				}
				for i := 1; i <= tc.leases; i++ {
					l := le.Lookup(LeaseID(i))
					at, _ := c.firstTime(l.ID)
					if honest := promoted.Add(ms(l.TTL()) + extend); at.Before(honest) {
						t.Fatalf("lease %d delivered %v early", i, honest.Sub(at))
					}
				}
			})
		})
	}
}

func TestExpiredLeaseFields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		le.Promote(0)
		mustGrant(t, le, 1, 1500)
		if err := le.Attach(1, items("k2", "k1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1600 * time.Millisecond)
		select {
		case b := <-le.ExpiredLeasesC():
			if len(b) != 1 || b[0].ID != 1 || b[0].TTL() != 1500 || fmt.Sprint(b[0].Keys()) != "[k1 k2]" || b[0].Remaining() != 0 {
				t.Fatalf("delivered %+v", b)
			}
		default:
			t.Fatal("nothing delivered")
		}
	})
}

// At the default RevokeRate, 100,000 simultaneous expiries take about
// (100,000 - BatchSize) / DefaultRevokeRate = 0.99 s of fake time.
func TestDefaultRateDelivers100k(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 100_000
		le := newTest(t, Config{RetryInterval: time.Hour})
		le.Promote(0)
		for i := LeaseID(1); i <= n; i++ {
			mustGrant(t, le, i, 1500)
		}
		exp := time.Now().Add(1500 * time.Millisecond)
		time.Sleep(1500 * time.Millisecond)
		got := 0
		for got < n {
			got += len(<-le.ExpiredLeasesC())
		}
		took := time.Since(exp)
		want := time.Duration(n-DefaultBatchSize) * time.Second / DefaultRevokeRate
		if took < want || took > want+50*time.Millisecond {
			t.Fatalf("100k expiries delivered in %v of fake time, want about %v", took, want)
		}
		t.Logf("100k simultaneous expiries at the default rate: %v of fake time", took)
	})
}
