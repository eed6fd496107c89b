package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeStreams is a system whose renewal streams acknowledge each renewal
// after delay (never, if delay is 0), checking that no lease has two
// renewals in flight.
type fakeStreams struct {
	system // only openStream is used
	delay  time.Duration

	mu       sync.Mutex
	inFlight map[int64]bool
	acked    map[int64]int
	overlap  []int64
}

type fakeStream struct {
	f    *fakeStreams
	acks chan int64
	ctx  context.Context
}

func (f *fakeStreams) openStream(ctx context.Context, _ int) (renewStream, error) {
	return &fakeStream{f: f, acks: make(chan int64, 1024), ctx: ctx}, nil
}

func (s *fakeStream) send(id int64) error {
	f := s.f
	f.mu.Lock()
	if f.inFlight[id] {
		f.overlap = append(f.overlap, id)
	}
	f.inFlight[id] = true
	f.mu.Unlock()
	if f.delay > 0 {
		time.AfterFunc(f.delay, func() {
			f.mu.Lock()
			f.inFlight[id] = false
			f.acked[id]++
			f.mu.Unlock()
			s.acks <- id
		})
	}
	return nil
}

func (s *fakeStream) recv() (int64, error) {
	select {
	case id := <-s.acks:
		return id, nil
	case <-s.ctx.Done():
		return 0, s.ctx.Err()
	}
}

func newFakeStreams(delay time.Duration) *fakeStreams {
	return &fakeStreams{delay: delay, inFlight: map[int64]bool{}, acked: map[int64]int{}}
}

func TestStreamLoadKeepsOneRenewalPerLeaseInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeStreams(time.Millisecond)
		ids := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
		r := streamLoad(context.Background(), f, 0, ids, 4, time.Second, 2*time.Second)
		if len(f.overlap) > 0 {
			t.Fatalf("leases with two renewals in flight: %v", f.overlap)
		}
		if r.Errors != 0 || r.FirstError != "" {
			t.Fatalf("errors: %d %q", r.Errors, r.FirstError)
		}
		// Each lease renews every millisecond: 1,000 per second each, of
		// which those sent in the 2 s measured interval count.
		if want := 2 * 1000 * len(ids); r.Ops != want {
			t.Errorf("ops = %d, want %d", r.Ops, want)
		}
		if r.P50Ms != 1 || r.P99Ms != 1 {
			t.Errorf("p50 %v p99 %v ms, want 1 and 1", r.P50Ms, r.P99Ms)
		}
		for _, id := range ids {
			if f.inFlight[id] {
				t.Errorf("lease %d still in flight after streamLoad returned", id)
			}
			if f.acked[id] < 3000 {
				t.Errorf("lease %d renewed %d times, want about 3,000", id, f.acked[id])
			}
		}
	})
}

func TestStreamLoadFailsAnUnansweredStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeStreams(0) // never acknowledges
		start := time.Now()
		r := streamLoad(context.Background(), f, 0, []int64{1, 2}, 2, time.Second, 10*time.Second)
		if r.Errors == 0 || !strings.Contains(r.FirstError, "renewal unanswered") {
			t.Fatalf("errors %d, first %q: want renewal unanswered", r.Errors, r.FirstError)
		}
		if took := time.Since(start); took > opTimeout+2*time.Second {
			t.Errorf("took %v to give up, want about opTimeout (%v)", took, opTimeout)
		}
		if r.Ops != 0 {
			t.Errorf("ops = %d, want 0", r.Ops)
		}
	})
}

func TestRecorderMerge(t *testing.T) {
	from := time.Unix(100, 0)
	a, b := newRecorder(from, from.Add(time.Second)), newRecorder(from, from.Add(time.Second))
	a.add(from, time.Millisecond, nil)
	b.add(from.Add(time.Millisecond), 3*time.Millisecond, nil)
	b.add(from.Add(2*time.Millisecond), 0, errors.New("boom"))
	all := newRecorder(from, from.Add(time.Second))
	all.merge(a)
	all.merge(b)
	r := all.result(2)
	if r.Ops != 2 || r.Errors != 1 || r.FirstError != "boom" {
		t.Fatalf("merged %+v", r)
	}
	if r.Seconds != 0.004 { // the interval ends at the last completion
		t.Errorf("seconds = %v, want 0.004", r.Seconds)
	}
}
