package lessor

import (
	"errors"
	"testing"
	"testing/synctest"
)

// Rule 10 (the lessor's part): a lease's owner is replicated state. It is set
// once by GrantOwned, read by Owner, and travels through State, CopyState
// and Recover; the lessor itself refuses nothing because of it.
func TestOwnerIsReplicatedState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newTest(t, Config{})
		owned, err := src.GrantOwned(1, 2000, "app1")
		if err != nil {
			t.Fatal(err)
		}
		if owned.Owner() != "app1" || src.Lookup(1).Owner() != "app1" {
			t.Fatalf("Owner() = %q, Lookup(1).Owner() = %q, want app1", owned.Owner(), src.Lookup(1).Owner())
		}
		if l := mustGrant(t, src, 2, 2000); l.Owner() != "" {
			t.Fatalf("Grant's lease has owner %q", l.Owner())
		}
		if _, err := src.GrantOwned(3, 2000, "ключ/CN with spaces"); err != nil {
			t.Fatal(err)
		}
		// GrantOwned validates like Grant, whatever the owner.
		if _, err := src.GrantOwned(1, 2000, "other"); !errors.Is(err, ErrLeaseExists) {
			t.Fatalf("GrantOwned of an existing ID: %v", err)
		}
		if src.Lookup(1).Owner() != "app1" {
			t.Fatal("a refused grant changed the owner")
		}
		if _, err := src.GrantOwned(4, 0, "app1"); !errors.Is(err, ErrInvalidTTL) {
			t.Fatalf("GrantOwned with TTL 0: %v", err)
		}
		// The lessor enforces nothing: anyone's Attach, Detach and Revoke
		// work on an owned lease (the FSM checks the actor first).
		if err := src.Attach(1, items("k")); err != nil {
			t.Fatal(err)
		}

		st := src.State()
		want := []string{"app1", "", "ключ/CN with spaces"}
		if len(st) != 3 {
			t.Fatalf("State() = %+v", st)
		}
		for i, s := range st {
			if s.Owner != want[i] {
				t.Fatalf("State()[%d].Owner = %q, want %q", i, s.Owner, want[i])
			}
		}
		cp := src.CopyState()
		SortState(cp)
		if !equalStates(cp, st) {
			t.Fatalf("CopyState differs from State: %+v", cp)
		}
		// equalStates compares owners: a state differing only by one
		// owner differs.
		other := append([]LeaseState(nil), st...)
		other[1].Owner = "app2"
		if equalStates(other, st) {
			t.Fatal("equalStates ignores owners")
		}

		dst := newTest(t, Config{})
		if _, err := dst.GrantOwned(1, 2000, "intruder"); err != nil { // replaced by Recover
			t.Fatal(err)
		}
		if err := dst.Recover(st, nil); err != nil {
			t.Fatal(err)
		}
		if got := dst.State(); !equalStates(got, st) {
			t.Fatalf("State after Recover differs:\n%+v\n%+v", got, st)
		}
		for i, w := range want {
			if got := dst.Lookup(st[i].ID).Owner(); got != w {
				t.Fatalf("recovered lease %d: Owner() = %q, want %q", st[i].ID, got, w)
			}
		}
		if err := dst.Revoke(1); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFakeLessorOwner(t *testing.T) {
	var fl FakeLessor
	l, err := fl.GrantOwned(5, 100, "app1")
	if err != nil || l.ID != 5 || l.TTL() != 100 || l.Owner() != "app1" {
		t.Fatalf("GrantOwned = %+v, %v", l, err)
	}
	if l, _ := fl.Grant(6, 100); l.Owner() != "" {
		t.Fatalf("Grant's lease has owner %q", l.Owner())
	}
}
