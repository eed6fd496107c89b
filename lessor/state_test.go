package lessor

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// Rule 1: the replicated state is what State returns; a replica recovered
// from it holds the same state.
func TestStateRecoverRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newTest(t, Config{})
		for i := LeaseID(1); i <= 20; i++ {
			mustGrant(t, src, i*3, 1500+int64(i)*100)
		}
		if err := src.Attach(3, items("b", "a", "c/d")); err != nil {
			t.Fatal(err)
		}
		if err := src.Attach(9, items("x")); err != nil {
			t.Fatal(err)
		}
		src.Checkpoint([]Checkpoint{{ID: 6, Remaining: 900}, {ID: 12}, {ID: 12}, {ID: 15, Remaining: 5}})
		st := src.State()
		if len(st) != 20 || st[0].ID != 3 || st[0].Keys[0] != "a" || st[1].Remaining != 900 || st[3].Gen != 2 {
			t.Fatalf("State() = %+v", st[:4])
		}
		for i := 1; i < len(st); i++ {
			if st[i-1].ID >= st[i].ID {
				t.Fatal("State() not sorted by ID")
			}
		}
		dst := newTest(t, Config{})
		mustGrant(t, dst, 1000, 2000) // replaced by Recover
		if err := dst.Attach(1000, items("a")); err != nil {
			t.Fatal(err)
		}
		var d recDeleter
		if err := dst.Recover(st, d.deleter()); err != nil {
			t.Fatal(err)
		}
		if got := dst.State(); !equalStates(got, st) {
			t.Fatalf("State after Recover differs:\n%+v\n%+v", got, st)
		}
		if dst.Lookup(1000) != nil {
			t.Fatal("Recover kept a lease that is not in the state")
		}
		if got := dst.GetLease(LeaseItem{"a"}); got != 3 {
			t.Fatalf("GetLease(a) = %d, want 3", got)
		}
		// The new range deleter is in place.
		if err := dst.Revoke(3); err != nil {
			t.Fatal(err)
		}
		if d.ends != 1 || len(d.keys) != 3 {
			t.Fatalf("Revoke after Recover deleted %v through the new deleter (%d ends)", d.keys, d.ends)
		}
		// Recover with rd nil keeps the deleter.
		if err := dst.Recover(st, nil); err != nil {
			t.Fatal(err)
		}
		if err := dst.Revoke(3); err != nil {
			t.Fatal(err)
		}
		if d.ends != 2 {
			t.Fatal("Recover(rd=nil) dropped the range deleter")
		}
		if err := dst.Recover(nil, nil); err != nil || len(dst.State()) != 0 {
			t.Fatalf("Recover(empty) = %v, %d leases", err, len(dst.State()))
		}
	})
}

// Recover validates everything before changing anything.
func TestRecoverValidatesFirst(t *testing.T) {
	good := []LeaseState{{ID: 1, TTL: 2000, Keys: []string{"a"}}, {ID: 2, TTL: 2000, Keys: []string{"b"}}}
	tests := []struct {
		name string
		bad  LeaseState
		want error
	}{
		{"zero ID", LeaseState{ID: 0, TTL: 2000}, ErrInvalidID},
		{"negative ID", LeaseState{ID: -4, TTL: 2000}, ErrInvalidID},
		{"zero TTL", LeaseState{ID: 5, TTL: 0}, ErrInvalidTTL},
		{"negative remainder", LeaseState{ID: 5, TTL: 2000, Remaining: -1}, ErrInvalidTTL},
		{"TTL above the ceiling", LeaseState{ID: 5, TTL: TTLCeiling.Milliseconds() + 1}, ErrInvalidTTL},
		{"remainder above the ceiling", LeaseState{ID: 5, TTL: 2000, Remaining: TTLCeiling.Milliseconds() + 1}, ErrInvalidTTL},
		{"duplicate ID", LeaseState{ID: 1, TTL: 2000}, ErrLeaseExists},
		{"empty key", LeaseState{ID: 5, TTL: 2000, Keys: []string{""}}, ErrInvalidItem},
		{"key held by another lease", LeaseState{ID: 5, TTL: 2000, Keys: []string{"c", "a"}}, ErrItemHeld},
		{"key twice in one lease", LeaseState{ID: 5, TTL: 2000, Keys: []string{"c", "c"}}, ErrItemHeld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			le := newTest(t, Config{})
			mustGrant(t, le, 9, 3000)
			if err := le.Attach(9, items("z")); err != nil {
				t.Fatal(err)
			}
			before := le.State()
			err := le.Recover(append(append([]LeaseState{}, good...), tt.bad), nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Recover = %v, want %v", err, tt.want)
			}
			if after := le.State(); !equalStates(before, after) {
				t.Fatalf("failed Recover changed the state:\n%+v\n%+v", before, after)
			}
			if le.GetLease(LeaseItem{"a"}) != NoLease || le.GetLease(LeaseItem{"z"}) != 9 {
				t.Fatal("failed Recover changed the item holders")
			}
		})
	}
}

// Recover on a primary reschedules every lease as a Promote would, from the
// recover time (checkpointed remainders count from it too), and nothing of
// the replaced table is delivered any more.
func TestRecoverOnPrimaryReschedules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		mustGrant(t, le, 1, 1500) // replaced before it expires
		const extend = 400 * time.Millisecond
		le.Promote(extend)
		c := collect(t, le)
		time.Sleep(time.Second)
		recovered := time.Now()
		err := le.Recover([]LeaseState{
			{ID: 2, TTL: 3000},
			{ID: 3, TTL: 3000, Remaining: 1000, Gen: 4},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !le.IsPrimary() {
			t.Fatal("Recover demoted the lessor")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if _, ok := c.firstTime(1); ok {
			t.Fatal("a lease replaced by Recover was delivered")
		}
		want := map[LeaseID]time.Time{
			2: recovered.Add(3*time.Second + extend),
			3: recovered.Add(time.Second + extend),
		}
		for id, w := range want {
			if at, ok := c.firstTime(id); !ok || !at.Equal(w) {
				t.Errorf("lease %d delivered at recover%+v (ok=%v), want recover%+v", id, at.Sub(recovered), ok, w.Sub(recovered))
			}
		}
		// The recovered lease expired in this term: Renew refuses it.
		if _, err := le.Renew(3); !errors.Is(err, ErrLeaseExpired) {
			t.Fatalf("Renew(3) = %v, want ErrLeaseExpired", err)
		}
	})
}

func TestRecoverOnPrimaryRenew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		le.Promote(0)
		if err := le.Recover([]LeaseState{{ID: 2, TTL: 3000}, {ID: 3, TTL: 3000, Remaining: 1000, Gen: 4}}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := le.Renew(2); err != nil {
			t.Fatalf("Renew(2) after Recover = %v", err)
		}
		if _, err := le.Renew(3); !errors.Is(err, ErrResetRequired) {
			t.Fatalf("Renew(3) with a recovered remainder = %v, want ErrResetRequired", err)
		}
		le.Checkpoint([]Checkpoint{{ID: 3}})
		if _, err := le.Renew(3); err != nil {
			t.Fatalf("Renew(3) after reset = %v", err)
		}
		if st := le.State(); st[1].Gen != 5 {
			t.Fatalf("Gen after reset = %d, want 5", st[1].Gen)
		}
	})
}

// Rule 5: State copies in chunks (the lock is released between them for
// renewals) and still returns every lease once, sorted, with renewals
// interleaved on a primary changing nothing it reports.
func TestStateInChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		le := newTest(t, Config{})
		le.sweepSize = 3
		for i := LeaseID(1); i <= 10; i++ {
			mustGrant(t, le, i, 2000)
		}
		le.Promote(time.Second)
		want := le.State()
		for i := LeaseID(1); i <= 10; i++ {
			if _, err := le.Renew(i); err != nil {
				t.Fatal(err)
			}
		}
		got := le.State()
		if len(got) != 10 {
			t.Fatalf("State() returned %d leases, want 10", len(got))
		}
		for i, s := range got {
			if s.ID != LeaseID(i+1) || s.TTL != want[i].TTL || s.Remaining != want[i].Remaining || s.Gen != want[i].Gen {
				t.Fatalf("State()[%d] = %+v, want %+v", i, s, want[i])
			}
		}
	})
}
