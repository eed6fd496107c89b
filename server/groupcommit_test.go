package server

import (
	"testing"
	"testing/synctest"
	"time"
)

// The committer lingers for the callers it has just answered: proposals
// that arrive before the deadline join the batch, and it goes as soon as the
// expected number is there.
func TestGatherWaitsForExpectedCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		start := time.Now()
		for i := range 3 {
			go func() {
				time.Sleep(time.Duration(i+1) * 100 * time.Microsecond)
				group <- &proposal{done: make(chan struct{})}
			}()
		}
		batch, stopped := gather(group, []*proposal{{}}, 4, start.Add(time.Millisecond), nil)
		if stopped || len(batch) != 4 {
			t.Fatalf("gathered %d proposals (stopped %v), want 4", len(batch), stopped)
		}
		if waited := time.Since(start); waited != 300*time.Microsecond {
			t.Fatalf("went after %v, want as soon as the third caller came back (300us)", waited)
		}
	})
}

// A caller that does not come back before the deadline does not hold the
// batch up any longer; it joins the next one.
func TestGatherStopsAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		start := time.Now()
		go func() {
			time.Sleep(200 * time.Microsecond)
			group <- &proposal{}
			time.Sleep(2 * time.Millisecond)
			group <- &proposal{}
		}()
		batch, _ := gather(group, []*proposal{{}}, 3, start.Add(time.Millisecond), nil)
		if len(batch) != 2 || time.Since(start) != time.Millisecond {
			t.Fatalf("gathered %d proposals after %v, want 2 after the 1ms deadline", len(batch), time.Since(start))
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if len(group) != 1 {
			t.Fatalf("the late proposal was not left for the next batch")
		}
	})
}

// Proposals already waiting are taken without any wait, abandoned ones are
// skipped, and a deadline already past never waits.
func TestGatherTakesWaitingWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		abandoned := &proposal{}
		abandoned.state.Store(proposalAbandoned)
		group <- &proposal{}
		group <- abandoned
		group <- &proposal{}
		start := time.Now()
		batch, _ := gather(group, nil, 2, start.Add(time.Millisecond), nil)
		if len(batch) != 2 || time.Since(start) != 0 {
			t.Fatalf("gathered %d after %v, want the 2 live proposals at once", len(batch), time.Since(start))
		}
		batch, _ = gather(group, batch, 5, start.Add(-time.Millisecond), nil)
		if len(batch) != 2 || time.Since(start) != 0 {
			t.Fatalf("a past deadline waited (%v)", time.Since(start))
		}
	})
}

// Stopping the node ends the wait.
func TestGatherStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		stop := make(chan struct{})
		go func() {
			time.Sleep(100 * time.Microsecond)
			close(stop)
		}()
		batch, stopped := gather(group, []*proposal{{}}, 3, time.Now().Add(time.Second), stop)
		if !stopped || len(batch) != 1 {
			t.Fatalf("stopped %v with %d proposals, want stopped with 1", stopped, len(batch))
		}
	})
}
