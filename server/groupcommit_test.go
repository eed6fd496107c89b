package server

import (
	"testing"
	"testing/synctest"
	"time"
)

// wave is n proposals arriving after a pause.
type wave struct {
	after time.Duration
	n     int
}

// arrive sends the waves of proposals to group, in order, from a new
// goroutine.
func arrive(group chan<- *proposal, waves ...wave) {
	go func() {
		for _, w := range waves {
			time.Sleep(w.after)
			for range w.n {
				group <- &proposal{}
			}
		}
	}()
}

// The committer lingers for the callers it has just answered (one proposal
// is in hand, linger 1ms): proposals that arrive before the linger ends join
// the batch, and it goes as soon as the expected number is there. Once half
// are back, a late caller does not hold the batch up; if fewer than half are
// back when the linger ends, the first was early and it waits on for the
// others, up to lingerExtension lingers more. Late callers are left for the
// next batch.
func TestGatherLingers(t *testing.T) {
	const us = time.Microsecond
	for _, c := range []struct {
		name      string
		waves     []wave
		expect    int
		wantBatch int
		wantAfter time.Duration
	}{
		{"all back within the linger", []wave{{100 * us, 1}, {100 * us, 1}, {100 * us, 1}}, 4, 4, 300 * us},
		{"half back: goes when the linger ends", []wave{{200 * us, 1}, {2000 * us, 1}}, 3, 2, 1000 * us},
		{"few back: waits on for the rest", []wave{{2500 * us, 7}}, 8, 8, 2500 * us},
		{"few back: waits on at most 4 lingers more", []wave{{2000 * us, 1}, {10000 * us, 6}}, 8, 2, (1 + lingerExtension) * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				group := make(chan *proposal, maxGroup)
				start := time.Now()
				arrive(group, c.waves...)
				batch, stopped := gather(group, []*proposal{{}}, c.expect, time.Millisecond, nil)
				if stopped || len(batch) != c.wantBatch || time.Since(start) != c.wantAfter {
					t.Fatalf("gathered %d after %v (stopped %v), want %d after %v", len(batch), time.Since(start), stopped, c.wantBatch, c.wantAfter)
				}
				sent := 1
				for _, w := range c.waves {
					sent += w.n
				}
				time.Sleep(time.Minute)
				synctest.Wait()
				if len(group) != sent-len(batch) {
					t.Fatalf("%d proposals left for the next batch, want %d", len(group), sent-len(batch))
				}
			})
		})
	}
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
		// The first comes back later than the linger; its fellows follow.
		arrive(group, wave{3 * time.Millisecond, 1}, wave{100 * time.Microsecond, 1}, wave{100 * time.Microsecond, 1}, wave{100 * time.Microsecond, 1})
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
		arrive(group, wave{time.Millisecond, 1}, wave{100 * time.Microsecond, 1})
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
