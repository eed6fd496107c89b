package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/leasecluster/leasecluster/client"
)

// locker takes a contended key with the client's lock helper, uses the
// fenced resource a few times while its lease deadline is ahead, then
// releases the lock or abandons it (the lease then expires and frees the
// key). It builds the lock with LockOn on a KeepAlive of its own, because
// client.Lock does not expose the lease's deadline, which a holder needs
// to respect its validity window.
func (w *workload) locker(ctx, pollCtx context.Context, p int, rng *rand.Rand) {
	for ctx.Err() == nil {
		key := w.cfg.Keys[rng.IntN(len(w.cfg.Keys))]
		id, ok := w.grant(ctx, p)
		if !ok {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		kctx, cancel := w.opCtx(ctx)
		ka, err := w.cl.KeepAlive(kctx, id)
		cancel()
		if err != nil {
			w.logf("locker %d: keepalive of lease %d: %v", p, id, err)
			w.revoke(pollCtx, p, id)
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		w.holdLock(ctx, pollCtx, p, rng, key, id, ka)
	}
}

func (w *workload) holdLock(ctx, pollCtx context.Context, p int, rng *rand.Rand, key string, id int64, ka *client.KeepAlive) {
	defer ka.Close()
	lctx, cancel := context.WithTimeout(ctx, 2*w.cfg.TTL)
	inv := w.h.Now()
	lock, err := w.cl.LockOn(lctx, ka, key, fmt.Sprintf("p%d", p))
	cancel()
	if err == nil {
		// The resource learns the new token as part of the acquisition, so
		// that a paused earlier holder's late write is refused even before
		// this holder's first write (the fencing checker counts any stale
		// write accepted after an acquisition completed).
		w.fenced.write(key, lock.Token())
	}
	op := Op{Process: p, Kind: OpAttach, Key: key, Lease: id, Status: lockOutcome(err), Err: errText(err), Invoke: inv, Complete: w.h.Now()}
	if err == nil {
		op.Holder, op.Rev = id, lock.Token()
	}
	w.h.Add(op)
	if err != nil {
		w.revoke(pollCtx, p, id)
		return
	}
	for range 1 + rng.IntN(5) {
		if !sleep(ctx, w.cfg.TTL/4) {
			break
		}
		select {
		case <-lock.Lost():
		default:
			// Use the resource only inside the validity window: before
			// the client-clock deadline of the last acknowledged renewal.
			now, dl := w.h.Now(), w.h.At(ka.Deadline())
			if now < dl {
				if d, ok := w.pause.take(); ok {
					w.pausedWrite(ctx, p, key, id, lock.Token(), dl, d, ka.Close)
					return // abandoned: its lease has expired
				}
				acc := w.fenced.write(key, lock.Token())
				w.h.Add(Op{Process: p, Kind: OpWrite, Key: key, Lease: id, Rev: lock.Token(), Deadline: dl, Accepted: acc, Status: StatusOK, Invoke: now, Complete: w.h.Now()})
				continue
			}
		}
		break
	}
	if rng.IntN(10) < 3 && ctx.Err() == nil {
		return // abandoned: the lease expires and frees the key
	}
	rctx, cancel := w.opCtx(pollCtx)
	inv = w.h.Now()
	err = lock.Release(rctx)
	cancel()
	w.h.Add(Op{Process: p, Kind: OpDetach, Key: key, Lease: id, Status: outcome(err), Err: errText(err), Invoke: inv, Complete: w.h.Now()})
	ka.Close()
	w.revoke(pollCtx, p, id)
}

// lockOutcome classifies LockOn's error. LockOn retries attaches while the
// key is held; it returns either the error of its last attach, or, when
// its context ends or the lease is lost while it waits between attempts,
// the bare context error or the KeepAlive's error. Only the latter, and an
// attach refused with a definite answer, are definite failures: an attach
// that timed out (the client wraps that as ErrNoLeader) may have been
// applied, so its outcome is unknown.
func lockOutcome(err error) string {
	switch {
	case err == nil:
		return StatusOK
	case err == context.DeadlineExceeded, err == context.Canceled: //nolint:errorlint // bare: from the wait, nothing in flight
		return StatusFail
	case errors.Is(err, client.ErrNoLeader):
		return StatusInfo
	case errors.Is(err, client.ErrLeaseExpired), errors.Is(err, client.ErrClosed):
		return StatusFail // the KeepAlive ended while LockOn waited
	}
	return outcome(err)
}

// pauseGate hands out the client pauses the client-pause nemesis arms: one
// pause of d for the first lock holder that passes its deadline check
// before until.
type pauseGate struct {
	mu    sync.Mutex
	d     time.Duration
	until time.Time
}

func (g *pauseGate) arm(d time.Duration, until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.d, g.until = d, until
}

func (g *pauseGate) disarm() { g.arm(0, time.Time{}) }

// take claims the armed pause, if any.
func (g *pauseGate) take() (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.d <= 0 || time.Now().After(g.until) {
		return 0, false
	}
	d := g.d
	g.d = 0
	return d, true
}

// pausedWrite is a holder that stops for d (a GC pause, a swapped-out
// process) right after it found its deadline dl ahead and before its write:
// nothing of it runs meanwhile, renewals included (its KeepAlive is closed
// when the pause starts), so its lease expires and another holder may take
// the key. Then it writes with its old token, as such a process would. The
// fenced resource must refuse the write if a newer holder has acquired the
// key; the write is recorded as made at its real time, after its deadline.
func (w *workload) pausedWrite(ctx context.Context, p int, key string, id int64, token uint64, dl int64, d time.Duration, stopRenewing func()) {
	stopRenewing()
	w.logf("locker %d: pausing %v between the deadline check and the write (lease %d, %s, token %d)", p, d, id, key, token)
	sleep(ctx, d) // the pause: cut short only when the run ends
	now := w.h.Now()
	acc := w.fenced.write(key, token)
	w.h.Add(Op{Process: p, Kind: OpWrite, Key: key, Lease: id, Rev: token, Deadline: dl, Accepted: acc, Status: StatusOK, Invoke: now, Complete: w.h.Now()})
	w.logf("locker %d: late write with token %d after the pause: accepted=%v", p, token, acc)
}

// peek reports the armed pause without taking it: false once a holder took
// it (or it expired).
func (g *pauseGate) peek() (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.d, g.d > 0 && time.Now().Before(g.until)
}
