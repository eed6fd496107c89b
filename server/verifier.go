package server

import (
	"context"
	"sync"
)

// defaultVerifyRounds is how many leadership confirmations may overlap.
const defaultVerifyRounds = 4

// verifier confirms leadership for renewals and linearizable reads (rule 2):
// a caller's confirmation must START after the caller's renewal, because a
// quorum round that began earlier proves nothing about leadership after it.
//
// Callers join the round that has not started yet (creating it if needed).
// A round starts as soon as fewer than maxRounds are running, so it always
// starts after every caller in it joined. Rounds overlap so that a renewal
// arriving mid-round can start its own round at once instead of waiting for
// the current one to end; raft folds concurrent VerifyLeader calls into its
// heartbeats, and the cap bounds the work under load, when a round collects
// many callers instead.
type verifier struct {
	check     func() error    // one confirmation: raft's VerifyLeader
	maxRounds int             // 0 means defaultVerifyRounds
	stopped   <-chan struct{} // closed when the node stops: no new rounds

	mu       sync.Mutex
	next     *verifyRound // the round callers join; not started yet
	inFlight int
}

// verifyRound is one confirmation shared by the callers that joined it.
type verifyRound struct {
	done   chan struct{} // closed when err is set
	err    error
	joined int // callers waiting on this round (guarded by verifier.mu)
}

// join adds the caller to a round that starts after this call and returns
// it; the result is in r.err once r.done is closed.
func (v *verifier) join() *verifyRound {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.next
	if r == nil {
		r = &verifyRound{done: make(chan struct{})}
		v.next = r
	}
	r.joined++
	v.startLocked()
	return r
}

// verify joins a round and waits for its result.
func (v *verifier) verify(ctx context.Context) error {
	return v.join().wait(ctx)
}

// wait returns the round's result once it has one.
func (r *verifyRound) wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// confirmedRound is a round that has already succeeded: what renewals get
// when raft's recent quorum contacts confirm them (renewLease). It never
// enters a verifier, so sharing it is safe.
var confirmedRound = func() *verifyRound {
	r := &verifyRound{done: make(chan struct{})}
	close(r.done)
	return r
}()

func (v *verifier) startLocked() {
	limit := v.maxRounds
	if limit <= 0 {
		limit = defaultVerifyRounds
	}
	if v.next == nil || v.inFlight >= limit {
		return
	}
	r := v.next
	v.next = nil
	v.inFlight++
	go v.run(r)
}

func (v *verifier) run(r *verifyRound) {
	select {
	case <-v.stopped:
		r.err = ErrStopped // raft is about to stop; a round could go unanswered
	default:
		r.err = v.check()
	}
	close(r.done)
	v.mu.Lock()
	v.inFlight--
	v.startLocked()
	v.mu.Unlock()
}
