package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/client/clienttest"
)

// fakeWorkload is a workload on an in-process fake cluster (clienttest)
// whose client records lock leases' renewals into the workload's history.
func fakeWorkload(t *testing.T, ttl time.Duration) (*workload, *clienttest.Cluster) {
	t.Helper()
	fc, err := clienttest.Start(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	fc.SetLeader(0)
	h := NewHistory()
	cl, err := client.New(context.Background(), fc.Addrs(), client.WithRequestTimeout(time.Second), client.WithRenewalObserver(renewalRecorder(h)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	w := newWorkload(WorkloadConfig{TTL: ttl, Keys: []string{"lock/a"}}, h, cl, nil, t.Logf)
	return w, fc
}

func opsOf(h *History, kind string) []Op {
	var out []Op
	for _, op := range h.Ops() {
		if op.Kind == kind {
			out = append(out, op)
		}
	}
	return out
}

// An attach that timed out inside a lock (applied, its answers lost) was
// recorded as failed; its outcome is unknown.
func TestLockAttachTimeoutIsUnknown(t *testing.T) {
	w, fc := fakeWorkload(t, 600*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, ok := w.grant(ctx, 0)
	if !ok {
		t.Fatal("grant failed")
	}
	ka, err := w.cl.KeepAlive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	fc.LoseReplies("Attach", 1<<20)
	w.holdLock(ctx, ctx, 0, rand.New(rand.NewPCG(1, 1)), "lock/a", id, ka)
	at := opsOf(w.h, OpAttach)
	if len(at) != 1 || at[0].Status != StatusInfo {
		t.Fatalf("attaches %+v, want one of unknown outcome", at)
	}
}

// lockOutcome on the errors LockOn returns: only a definite answer or the
// bare context error of its wait between attempts is a failure.
func TestLockOutcome(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, StatusOK},
		{context.DeadlineExceeded, StatusFail},
		{fmt.Errorf("%w: %w (last error: %v)", client.ErrNoLeader, context.DeadlineExceeded, "Unavailable"), StatusInfo},
		{fmt.Errorf("%w: lease 3", client.ErrLeaseNotFound), StatusFail},
		{client.ErrLeaseExpired, StatusFail},
		{fmt.Errorf("%w: key held", client.ErrItemHeld), StatusFail},
		{errors.New("rpc error: code = Internal"), StatusInfo},
	} {
		if got := lockOutcome(tt.err); got != tt.want {
			t.Errorf("lockOutcome(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// Lock leases' renewals reach the history from the client's renewal
// observer, and the claims they give are the client's own deadline.
func TestLockLeaseRenewalsRecorded(t *testing.T) {
	const ttl = 600 * time.Millisecond
	w, fc := fakeWorkload(t, ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, ok := w.grant(ctx, 0)
	if !ok {
		t.Fatal("grant failed")
	}
	ka, err := w.cl.KeepAlive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	acked := func() int {
		n := 0
		for _, op := range opsOf(w.h, OpRenew) {
			if op.Process == ProcessKeepAlive && op.Lease == id && op.Status == StatusOK && op.Found {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); acked() < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("%d renewals recorded", acked())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Once a renewal is held unanswered, every earlier one was answered.
	fc.StallRenewals(true)
	defer fc.StallRenewals(false)
	for deadline := time.Now().Add(10 * time.Second); fc.Arrived(id) <= fc.Renewals(id); {
		if time.Now().After(deadline) {
			t.Fatal("no renewal held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := w.h.At(ka.Deadline())
	ka.Close()
	l := indexHistory(w.h.Ops())[id]
	if got := l.validUntil(w.h.Now()); got != want {
		t.Fatalf("claims give %s, the client's deadline is %s", ms(got), ms(want))
	}
}
