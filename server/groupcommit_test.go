package server

import (
	"testing"
	"testing/synctest"
	"time"
)

// The committer lingers for the callers it has just answered: proposals
// that arrive before the linger ends join the batch, and it goes as soon as
// the expected number is there.
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
		batch, stopped := gather(group, []*proposal{{}}, 4, time.Millisecond, nil)
		if stopped || len(batch) != 4 {
			t.Fatalf("gathered %d proposals (stopped %v), want 4", len(batch), stopped)
		}
		if waited := time.Since(start); waited != 300*time.Microsecond {
			t.Fatalf("went after %v, want as soon as the third caller came back (300us)", waited)
		}
	})
}

// Once half of the expected callers are back, one that does not come back
// before the linger ends does not hold the batch up; it joins the next one.
func TestGatherStopsAtLingerEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		start := time.Now()
		go func() {
			time.Sleep(200 * time.Microsecond)
			group <- &proposal{}
			time.Sleep(2 * time.Millisecond)
			group <- &proposal{}
		}()
		batch, _ := gather(group, []*proposal{{}}, 3, time.Millisecond, nil)
		if len(batch) != 2 || time.Since(start) != time.Millisecond {
			t.Fatalf("gathered %d proposals after %v, want 2 when the 1ms linger ended", len(batch), time.Since(start))
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if len(group) != 1 {
			t.Fatalf("the late proposal was not left for the next batch")
		}
	})
}

// Proposals already waiting are taken without any wait, abandoned ones are
// skipped, and no linger means no wait.
func TestGatherTakesWaitingWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		abandoned := &proposal{}
		abandoned.state.Store(proposalAbandoned)
		group <- &proposal{}
		group <- abandoned
		group <- &proposal{}
		start := time.Now()
		batch, _ := gather(group, nil, 2, time.Millisecond, nil)
		if len(batch) != 2 || time.Since(start) != 0 {
			t.Fatalf("gathered %d after %v, want the 2 live proposals at once", len(batch), time.Since(start))
		}
		batch, _ = gather(group, batch, 5, 0, nil)
		if len(batch) != 2 || time.Since(start) != 0 {
			t.Fatalf("no linger waited (%v)", time.Since(start))
		}
	})
}

// If the linger ends with fewer than half of the expected callers back, the
// first one was early: the committer waits on for the others rather than
// send it alone and make them wait a whole commit.
func TestGatherWaitsOnWhenFewAreBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		start := time.Now()
		go func() {
			time.Sleep(2500 * time.Microsecond) // after the linger, within the extension
			for range 7 {
				group <- &proposal{}
			}
		}()
		batch, _ := gather(group, []*proposal{{}}, 8, time.Millisecond, nil)
		if len(batch) != 8 || time.Since(start) != 2500*time.Microsecond {
			t.Fatalf("gathered %d after %v, want all 8 when they came back (2.5ms)", len(batch), time.Since(start))
		}
	})
}

// Waiting on is bounded: lingerExtension lingers after the first, the
// committer goes with whoever is back.
func TestGatherWaitOnIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		start := time.Now()
		go func() {
			time.Sleep(2 * time.Millisecond)
			group <- &proposal{}
			time.Sleep(10 * time.Millisecond)
			for range 6 {
				group <- &proposal{}
			}
		}()
		batch, _ := gather(group, []*proposal{{}}, 8, time.Millisecond, nil)
		if want := (1 + lingerExtension) * time.Millisecond; len(batch) != 2 || time.Since(start) != want {
			t.Fatalf("gathered %d after %v, want 2 after %v", len(batch), time.Since(start), want)
		}
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if len(group) != 6 {
			t.Fatalf("%d late proposals left for the next batch, want 6", len(group))
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
		batch, stopped := gather(group, []*proposal{{}}, 3, time.Second, stop)
		if !stopped || len(batch) != 1 {
			t.Fatalf("stopped %v with %d proposals, want stopped with 1", stopped, len(batch))
		}
	})
}

// After an entry of several proposals the linger counts from the first
// caller back, however long that took: its fellows are right behind it.
func TestCollectLingersFromFirstArrival(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		start := time.Now()
		go func() {
			time.Sleep(3 * time.Millisecond) // longer than the linger
			group <- &proposal{}
			for range 3 {
				time.Sleep(100 * time.Microsecond)
				group <- &proposal{}
			}
		}()
		batch, stopped := collect(group, nil, 4, 4, time.Millisecond, nil)
		if stopped || len(batch) != 4 {
			t.Fatalf("collected %d proposals (stopped %v), want all 4 callers in one batch", len(batch), stopped)
		}
		if waited := time.Since(start); waited != 3300*time.Microsecond {
			t.Fatalf("went after %v, want when the fourth caller came back (3.3ms)", waited)
		}
	})
}

// After a lone proposal nothing lingers: a single client must not wait.
func TestCollectAfterLoneProposalGoesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		group := make(chan *proposal, maxGroup)
		go func() {
			time.Sleep(time.Millisecond)
			group <- &proposal{}
			time.Sleep(100 * time.Microsecond)
			group <- &proposal{}
		}()
		start := time.Now()
		batch, _ := collect(group, nil, 1, 2, time.Millisecond, nil)
		if len(batch) != 1 || time.Since(start) != time.Millisecond {
			t.Fatalf("collected %d after %v, want 1 as soon as it came (1ms)", len(batch), time.Since(start))
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if len(group) != 1 {
			t.Fatalf("the second proposal was not left for the next batch")
		}
	})
}

// Stopping the node while no proposal is waiting ends the wait for one.
func TestCollectStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stop := make(chan struct{})
		go func() {
			time.Sleep(time.Millisecond)
			close(stop)
		}()
		batch, stopped := collect(make(chan *proposal), nil, 4, 4, time.Millisecond, stop)
		if !stopped || len(batch) != 0 {
			t.Fatalf("stopped %v with %d proposals, want stopped with none", stopped, len(batch))
		}
	})
}
