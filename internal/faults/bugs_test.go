package faults

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/server"
)

// TestEveryBugInstalls: each listed variant sets at least one fault point
// (the diverge variant on its one node only) and an unknown name none.
func TestEveryBugInstalls(t *testing.T) {
	t.Setenv("LEASECLUSTER_CHAOS_DIVERGE_NODE", "")
	for _, bug := range Bugs {
		t.Setenv("LEASECLUSTER_CHAOS_BUG", bug)
		cfg := &server.Config{Name: "n1"}
		Install(cfg)
		f := *cfg.Faults
		f.LogStore, f.HTTP = nil, nil
		if reflect.ValueOf(f).IsZero() && bug != BugWallClock {
			t.Errorf("%s sets no fault point", bug)
		}
	}
	t.Setenv("LEASECLUSTER_CHAOS_BUG", BugDiverge)
	cfg := &server.Config{Name: "n2"}
	Install(cfg)
	if cfg.Faults.ApplyEntry != nil {
		t.Error("diverge changes the apply of a node other than n1")
	}
}

func TestIDReuser(t *testing.T) {
	now := time.Unix(0, 0)
	r := &idReuser{age: 10 * time.Second, now: func() time.Time { return now }}
	if got := r.id(1); got != 1 {
		t.Fatalf("first grant: %d", got)
	}
	now = now.Add(5 * time.Second)
	if got := r.id(2); got != 2 {
		t.Fatalf("too early to reuse: %d", got)
	}
	now = now.Add(5 * time.Second)
	if got := r.id(3); got != 1 {
		t.Fatalf("after 10 s: %d, want 1 again", got)
	}
	if got := r.id(4); got != 4 {
		t.Fatalf("1 is reused once only, 2 is too young: %d", got)
	}
}

func TestSmallEarlyFraction(t *testing.T) {
	for _, id := range []lessor.LeaseID{1, 500, 1000, 1 << 62} {
		if f := smallEarlyFraction(id); f < 0.03 || f > 0.05 {
			t.Errorf("lease %d: %f outside 3-5%%", id, f)
		}
	}
}

// TestForgetRevokeRequests: the diverge variant's replica ends with the
// same leases and items as the others but a different state hash, and
// leaves every other entry, and the one raft passed, as they were.
func TestForgetRevokeRequests(t *testing.T) {
	grant7 := must(fsm.EncodeGrant(1, 7, 5000, ""))
	grant8 := must(fsm.EncodeGrant(2, 8, 5000, ""))
	attach := must(fsm.EncodeAttach(3, 7, "k", "v", fsm.Actor{}))
	revoke := must(fsm.EncodeRevoke(4, []lessor.LeaseID{7}, false, fsm.Actor{}))
	expire := must(fsm.EncodeRevoke(0, []lessor.LeaseID{8}, true, fsm.Actor{}))
	batch := must(fsm.EncodeBatch([][]byte{grant8, revoke}))
	for name, entries := range map[string][][]byte{
		"alone":    {grant7, grant8, attach, revoke, expire},
		"in batch": {grant7, attach, batch, expire},
	} {
		good, bad := newFSM(t), newFSM(t)
		for i, data := range entries {
			l := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}
			good.f.Apply(l)
			bl := forgetRevokeRequests(l)
			bad.f.Apply(bl)
			if !bytes.Equal(l.Data, data) {
				t.Fatalf("%s: the entry raft passed was modified", name)
			}
			isRevoke := bytes.Equal(data, revoke) || bytes.Equal(data, batch)
			if changed := !bytes.Equal(bl.Data, data); changed != isRevoke {
				t.Errorf("%s: entry %d changed %v, want %v", name, i, changed, isRevoke)
			}
		}
		if good.le.Len() != 0 || bad.le.Len() != 0 {
			t.Errorf("%s: %d and %d leases left, want none", name, good.le.Len(), bad.le.Len())
		}
		if _, ok := bad.f.Item("k"); ok {
			t.Errorf("%s: the revoke left its item on the diverging replica", name)
		}
		if good.f.StateHash() == bad.f.StateHash() {
			t.Errorf("%s: equal state hashes: the divergence is invisible to the convergence checker", name)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

type testFSM struct {
	f  *fsm.FSM
	le lessor.Lessor
}

func newFSM(t *testing.T) testFSM {
	le, err := lessor.NewLessor(lessor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(le.Stop)
	f, err := fsm.New(fsm.Config{Lessor: le, OnFatal: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	return testFSM{f, le}
}
