package faults

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestChaosClockFollowerRate: the follower rate runs only while the node is
// not leading, and readings stay continuous across every switch; the harness
// relies on both to drift followers beyond the margin without ever making a
// leader's own renewals expire early.
func TestChaosClockFollowerRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var leading atomic.Bool
		c := NewClock(false)
		c.setLeading(leading.Load)
		fast := 1.5
		c.set(nil, nil, &fast)
		elapsed := func(d time.Duration) time.Duration {
			t.Helper()
			before := c.Now()
			time.Sleep(d)
			return c.Now().Sub(before)
		}
		if got := elapsed(time.Second); got != 1500*time.Millisecond {
			t.Fatalf("following: 1s of real time read as %v, want 1.5s", got)
		}
		leading.Store(true)
		c.Now() // the switch is noticed at the first reading as leader
		if got := elapsed(time.Second); got != time.Second {
			t.Fatalf("leading: 1s of real time read as %v, want 1s", got)
		}
		leading.Store(false)
		c.Now()
		if got := elapsed(time.Second); got != 1500*time.Millisecond {
			t.Fatalf("following again: 1s read as %v, want 1.5s", got)
		}
		one := 1.0
		c.set(nil, nil, &one)
		if got := elapsed(time.Second); got != time.Second {
			t.Fatalf("follower rate 1: 1s read as %v", got)
		}
		if st := c.state(); st.Rate != 1 || st.FollowerRate != 1 || st.Current != 1 {
			t.Fatalf("state %+v", st)
		}
	})
}

// TestChaosClockContinuous: changing rates never moves a reading back.
func TestChaosClockContinuous(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewClock(false)
		prev := c.Now()
		for _, r := range []float64{2, 0.5, 1.1, 1} {
			time.Sleep(100 * time.Millisecond)
			c.set(nil, &r, nil)
			now := c.Now()
			if now.Before(prev) {
				t.Fatalf("rate %v: reading went back from %v to %v", r, prev, now)
			}
			prev = now
		}
	})
}
