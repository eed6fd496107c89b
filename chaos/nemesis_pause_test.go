package chaos

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClientPauseStaleWriteRefused: a holder paused between its deadline
// check and its fenced write loses its lease; another holder takes the key;
// the paused holder's late write is refused by the fenced resource, and the
// checkers see it: fencing counts it refused, and no-overlapping-holders
// does not count a write made past its deadline as a use of the key.
func TestClientPauseStaleWriteRefused(t *testing.T) {
	const ttl = 600 * time.Millisecond
	w, _ := fakeWorkload(t, ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lockWith := func(p int) {
		id, ok := w.grant(ctx, p)
		if !ok {
			t.Error("grant failed")
			return
		}
		ka, err := w.cl.KeepAlive(ctx, id)
		if err != nil {
			t.Error(err)
			return
		}
		w.holdLock(ctx, ctx, p, rand.New(rand.NewPCG(uint64(p), 1)), "lock/a", id, ka)
	}
	w.pause.arm(2*time.Second, time.Now().Add(10*time.Second))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); lockWith(0) }()
	// The second holder starts once the first is paused.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, armed := w.pause.peek(); !armed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first holder never reached its deadline check")
		}
	}
	lockWith(1)
	wg.Wait()

	var late *Op
	for _, op := range opsOf(w.h, OpWrite) {
		if op.Process == 0 && op.Invoke >= op.Deadline {
			late = &op
		}
	}
	if late == nil {
		t.Fatalf("no late write by the paused holder: %+v", opsOf(w.h, OpWrite))
	}
	if late.Accepted {
		t.Fatalf("the paused holder's stale write (token %d) was accepted", late.Rev)
	}
	at := opsOf(w.h, OpAttach)
	if len(at) != 2 || at[1].Rev <= at[0].Rev || at[1].Complete > late.Invoke {
		t.Fatalf("attaches %+v: want the second holder's, with a higher token, before the late write", at)
	}
	vs := Check(w.h.Ops(), nil, CheckConfig{Minimums: map[string]int{}, LinTimeout: 10 * time.Second})
	for _, name := range []string{CheckFencing, CheckNoOverlap} {
		if !vs[name].OK {
			t.Errorf("%s: %s", name, vs[name].Detail)
		}
	}
	if d := vs[CheckFencing].Detail; !strings.Contains(d, "1 stale writes refused") {
		t.Errorf("fencing detail %q does not count the refused write", d)
	}

	// Had the resource accepted it, fencing must fail.
	ops := w.h.Ops()
	for i := range ops {
		if ops[i].Index == late.Index {
			ops[i].Accepted = true
		}
	}
	if v := Check(ops, nil, CheckConfig{Minimums: map[string]int{}, LinTimeout: 10 * time.Second})[CheckFencing]; v.OK {
		t.Errorf("an accepted stale write passed fencing: %s", v.Detail)
	}
}

func TestPauseGate(t *testing.T) {
	var g pauseGate
	if _, ok := g.take(); ok {
		t.Fatal("an unarmed gate gave a pause")
	}
	g.arm(time.Second, time.Now().Add(time.Hour))
	if d, ok := g.take(); !ok || d != time.Second {
		t.Fatalf("take = %v, %v", d, ok)
	}
	if _, ok := g.take(); ok {
		t.Fatal("one armed pause was taken twice")
	}
	g.arm(time.Second, time.Now().Add(-time.Millisecond))
	if _, ok := g.take(); ok {
		t.Fatal("an expired arming gave a pause")
	}
}
