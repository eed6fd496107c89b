package faults

import (
	"bytes"
	"context"
	"reflect"
	"sync"
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

// TestTermTokens: tokens grow within a term and start again at each
// Promote, below those of the term before.
func TestTermTokens(t *testing.T) {
	var tt termTokens
	tt.restart()
	a, b := tt.next(100), tt.next(101)
	if a != 1 || b != 2 {
		t.Fatalf("first term: %d, %d, want 1, 2", a, b)
	}
	tt.restart()
	if c := tt.next(102); c > b {
		t.Fatalf("after a Promote: %d, want below %d", c, b)
	}
}

// fakeTerm is a Term over a lessor: grants go straight to it.
type fakeTerm struct {
	le     lessor.Lessor
	mu     sync.Mutex
	grants []lessor.LeaseID
}

func (ft *fakeTerm) Leases() []*lessor.Lease { return ft.le.Leases() }
func (ft *fakeTerm) RevokeExpired(_ context.Context, ids []lessor.LeaseID) error {
	for _, id := range ids {
		_ = ft.le.Revoke(id)
	}
	return nil
}

func (ft *fakeTerm) Grant(_ context.Context, id lessor.LeaseID, ttlMs int64, owner string) error {
	ft.mu.Lock()
	ft.grants = append(ft.grants, id)
	ft.mu.Unlock()
	_, err := ft.le.GrantOwned(id, ttlMs, owner)
	return err
}

// TestResurrector: a lease that expired is granted again, once,
// resurrectAfter later, with its TTL and owner; a lease revoked with time
// left is not.
func TestResurrector(t *testing.T) {
	clk := &manualClock{}
	le, err := lessor.NewLessor(lessor.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(le.Stop)
	le.Promote(0)
	if _, err := le.GrantOwned(1, 1000, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := le.Grant(2, 1000); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	tick, passed := make(chan time.Time), make(chan struct{})
	r := &resurrector{granted: map[lessor.LeaseID]bool{}, tick: tick, passed: passed}
	ft := &fakeTerm{le: le}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx, ft); close(done) }()
	step := func() { tick <- now; <-passed } // one pass, finished before the test goes on
	step()
	_ = le.Revoke(2) // a client revoke, with time left
	clk.advance(950 * time.Millisecond)
	step()
	_ = le.Revoke(1) // the expiry revoke, under expiringWithin before it was due
	step()
	now = now.Add(resurrectAfter - time.Millisecond)
	step()
	ft.mu.Lock()
	early := len(ft.grants)
	ft.mu.Unlock()
	if early != 0 {
		t.Fatal("granted again before resurrectAfter")
	}
	now = now.Add(time.Millisecond)
	step()
	cancel()
	<-done
	if len(ft.grants) != 1 || ft.grants[0] != 1 {
		t.Fatalf("grants %v, want lease 1 once", ft.grants)
	}
	l := le.Lookup(1)
	if l == nil || l.TTL() != 1000 || l.Owner() != "alice" {
		t.Fatalf("lease 1 after the resurrection: %+v", l)
	}
}

// TestOrphanItems: with the variant an expiry revoke deletes the lease and
// leaves its item held by it; a client revoke still deletes the items; and
// another lease can attach the orphaned key.
func TestOrphanItems(t *testing.T) {
	le, err := lessor.NewLessor(lessor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(le.Stop)
	f, err := fsm.New(fsm.Config{Lessor: le, OnFatal: func(err error) { t.Error(err) }, BeforeExpiryRevoke: orphanItems})
	if err != nil {
		t.Fatal(err)
	}
	entries := [][]byte{
		must(fsm.EncodeGrant(1, 7, 5000, "")),
		must(fsm.EncodeGrant(2, 8, 5000, "")),
		must(fsm.EncodeAttach(3, 7, "a", "v", fsm.Actor{})),
		must(fsm.EncodeAttach(4, 8, "b", "v", fsm.Actor{})),
		must(fsm.EncodeRevoke(0, []lessor.LeaseID{7}, true, fsm.Actor{})),
		must(fsm.EncodeRevoke(5, []lessor.LeaseID{8}, false, fsm.Actor{})),
	}
	for i, data := range entries {
		f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})
	}
	if le.Len() != 0 {
		t.Fatalf("%d leases left, want none", le.Len())
	}
	if it, ok := f.Item("a"); !ok || it.LeaseID != 7 {
		t.Errorf("the expired lease's item: %+v %v, want held by 7", it, ok)
	}
	if _, ok := f.Item("b"); ok {
		t.Error("the client revoke left its item")
	}
	for i, data := range [][]byte{must(fsm.EncodeGrant(6, 9, 5000, "")), must(fsm.EncodeAttach(7, 9, "a", "w", fsm.Actor{}))} {
		res := f.Apply(&raft.Log{Index: uint64(len(entries) + i + 1), Term: 1, Type: raft.LogCommand, Data: data}).(*fsm.Result)
		if res.Err != nil {
			t.Fatalf("taking the orphaned key: %v", res.Err)
		}
	}
	if it, _ := f.Item("a"); it.LeaseID != 9 {
		t.Errorf("after another lease attached it: %+v", it)
	}
}

// manualClock is a lessor clock that moves only when told.
type manualClock struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(1000, 0).Add(c.d)
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.d += d
	c.mu.Unlock()
}
