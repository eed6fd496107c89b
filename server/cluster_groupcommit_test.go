package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/lessor"
)

// Concurrent grants and revokes share log entries (group commit), and each
// still gets its own answer: distinct leases, request-ID retries answered
// with the original lease, revokes that remove exactly their lease, and the
// same state on every replica.
func TestClusterGroupCommit(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	ctx := ctxT(t)
	const workers, each = 64, 8
	before := ld.info.status(true).LastIndex

	var (
		mu      sync.Mutex
		granted = map[lessor.LeaseID]bool{}
		revoked []lessor.LeaseID
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				reqID := uint64(w*each + i + 1)
				id, _, err := ld.ops.grant(ctx, 0, 60_000, reqID)
				if err != nil {
					errs <- err
					return
				}
				// A retry of the same request: the same lease, not a new one.
				again, _, err := ld.ops.grant(ctx, 0, 60_000, reqID)
				if err != nil || again != id {
					errs <- errors.Join(err, errors.New("retry of a grant answered with another lease"))
					return
				}
				if i%2 == 1 {
					if err := ld.ops.revoke(ctx, id, 0); err != nil {
						errs <- err
						return
					}
				}
				mu.Lock()
				if granted[id] {
					errs <- errors.New("two grants answered with one lease")
				}
				granted[id] = true
				if i%2 == 1 {
					revoked = append(revoked, id)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	commands := uint64(workers * each * 2) // grants and their retries ...
	commands += uint64(len(revoked))       // ... and the revokes
	entries := ld.info.status(true).LastIndex - before
	// 64 callers in a closed loop: the committer lingers for those it has
	// just answered, so entries carry tens of commands (18 each before it
	// lingered, about 60 with it); a quarter of that is a safe floor.
	if entries*4 >= commands {
		t.Fatalf("%d commands took %d log entries: fewer than 4 an entry", commands, entries)
	}
	t.Logf("%d commands in %d log entries", commands, entries)
	c.converge()
	for _, n := range c.running() {
		for id := range granted {
			gone := false
			for _, r := range revoked {
				gone = gone || r == id
			}
			if _, err := n.reader.timeToLive(ctx, id, false, true); (err == nil) == gone {
				t.Fatalf("%s: lease %d revoked=%v, TimeToLive: %v", n.Name(), id, gone, err)
			}
		}
	}
}

// A grant or revoke whose context has already ended is not proposed at all.
func TestClusterGroupCommitEndedContext(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	id, _, err := ld.ops.grant(ctxT(t), 0, 60_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := ld.info.status(true).LastIndex
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 {
		if _, _, err := ld.ops.grant(ctx, 0, 60_000, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("grant with an ended context: %v", err)
		}
		if err := ld.ops.revoke(ctx, id, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("revoke with an ended context: %v", err)
		}
	}
	if after := ld.info.status(true).LastIndex; after != before {
		t.Fatalf("log grew from %d to %d for commands whose callers had given up", before, after)
	}
	if _, err := ld.reader.timeToLive(ctxT(t), id, false, false); err != nil {
		t.Fatalf("lease revoked by a call with an ended context: %v", err)
	}
}

// A grant whose caller gives up while its entry is being committed does not
// take the others of its batch down with it, and the node keeps serving.
func TestClusterGroupCommitCallerGivesUp(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			ctx := context.Background()
			if i%2 == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Duration(i)*50*time.Microsecond)
				defer cancel()
			}
			_, _, err := ld.ops.grant(ctx, 0, 60_000, 0)
			if i%2 == 1 && err != nil {
				t.Errorf("grant %d beside abandoned ones: %v", i, err)
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("grant %d: %v, want a deadline error", i, err)
			}
		})
	}
	wg.Wait()
	if _, _, err := ld.ops.grant(ctxT(t), 0, 60_000, 0); err != nil {
		t.Fatal(err)
	}
	c.converge()
}
