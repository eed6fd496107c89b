package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Rule 2 (no early expiry) needs every acknowledged renewal to be followed by
// a leadership confirmation that started after it. A caller that arrives
// while a round is in flight must wait for the next round.
func TestVerifierNeverJoinsARoundInFlight(t *testing.T) {
	var rounds atomic.Int64
	started := make(chan int64)
	release := make(chan error)
	v := &verifier{maxRounds: 1, check: func() error {
		n := rounds.Add(1)
		started <- n
		return <-release
	}}
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- v.verify(ctx) }()
	if n := <-started; n != 1 {
		t.Fatalf("round %d started, want 1", n)
	}
	// Round 1 is in flight; these callers arrive now and must get round 2.
	var wg sync.WaitGroup
	late := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); late <- v.verify(ctx) }()
	}
	waitFor(t, func() bool { v.mu.Lock(); defer v.mu.Unlock(); return v.next != nil && v.next.joined == 3 })
	release <- errors.New("round 1 failed") // round 1's result must reach only the first caller
	if err := <-first; err == nil {
		t.Fatal("first caller did not get round 1's result")
	}
	if n := <-started; n != 2 {
		t.Fatalf("round %d started, want 2", n)
	}
	release <- nil
	wg.Wait()
	close(late)
	for err := range late {
		if err != nil {
			t.Fatalf("late caller got %v, want round 2's success", err)
		}
	}
	if got := rounds.Load(); got != 2 {
		t.Fatalf("%d rounds for 4 callers, want 2 (later callers share one)", got)
	}
}

func TestVerifierHonoursContext(t *testing.T) {
	block := make(chan struct{})
	v := &verifier{check: func() error { <-block; return nil }}
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := v.verify(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("verify with an expired context: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// With room for overlapping rounds, a caller arriving mid-round starts its
// own round at once, and that round still starts after it joined.
func TestVerifierOverlapsRounds(t *testing.T) {
	started := make(chan int, 4)
	release := make(chan struct{})
	var rounds atomic.Int64
	v := &verifier{maxRounds: 2, check: func() error {
		started <- int(rounds.Add(1))
		<-release
		return nil
	}}
	ctx := context.Background()
	errs := make(chan error, 3)
	go func() { errs <- v.verify(ctx) }()
	<-started
	go func() { errs <- v.verify(ctx) }()
	if n := <-started; n != 2 {
		t.Fatalf("round %d started, want a second round at once", n)
	}
	// A third caller finds both slots busy: it waits in the next round.
	go func() { errs <- v.verify(ctx) }()
	waitFor(t, func() bool { v.mu.Lock(); defer v.mu.Unlock(); return v.next != nil && v.next.joined == 1 })
	close(release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := rounds.Load(); n != 3 {
		t.Fatalf("%d rounds, want 3", n)
	}
}
