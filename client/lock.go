package client

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Lock is ownership of an item, fenced by the item's revision. Whoever
// touches a resource guarded by the lock should pass Token along so the
// resource can reject an older holder (ARCHITECTURE.md rule 7).
type Lock struct {
	c        *Client
	key      string
	ka       *KeepAlive
	ownLease bool // the lock granted its lease and revokes it on Release
	item     Item

	lost     chan struct{} // closed when ownership may be lost or on Release
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when the watcher goroutine exits
}

type lockConfig struct{ value string }

// LockOption configures Lock.
type LockOption func(*lockConfig)

// WithLockValue sets the value stored in the lock's item (say, the holder's name).
func WithLockValue(v string) LockOption { return func(l *lockConfig) { l.value = v } }

// Lock grants a lease with the given TTL, keeps it alive, and attaches key to
// it, waiting (polling with jittered backoff) while another lease holds key,
// until ctx ends. On failure the lease is revoked.
func (c *Client) Lock(ctx context.Context, key string, ttl time.Duration, opts ...LockOption) (*Lock, error) {
	var cfg lockConfig
	for _, o := range opts {
		o(&cfg)
	}
	lease, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	ka, err := c.KeepAlive(ctx, lease.ID)
	if err == nil {
		var l *Lock
		if l, err = c.acquire(ctx, ka, key, cfg.value, true); err == nil {
			return l, nil
		}
		ka.Close()
	}
	// Best effort, on a context that outlives ctx (which may have ended):
	// the lease would otherwise hold nothing until its TTL runs out.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.requestTimeout)
	defer cancel()
	_ = c.Revoke(rctx, lease.ID)
	return nil, err
}

// LockOn acquires key on a lease the caller already keeps alive. Release
// detaches the item but leaves the lease (and ka) to the caller.
func (c *Client) LockOn(ctx context.Context, ka *KeepAlive, key, value string) (*Lock, error) {
	return c.acquire(ctx, ka, key, value, false)
}

func (c *Client) acquire(ctx context.Context, ka *KeepAlive, key, value string, ownLease bool) (*Lock, error) {
	for attempt := 1; ; attempt++ {
		// A fresh request ID per attempt: a retry of an attempt that was
		// refused because the item was held must be a new request, not a
		// replay of the refusal.
		item, err := c.Attach(ctx, ka.ID(), key, value)
		if err == nil {
			l := &Lock{
				c: c, key: key, ka: ka, ownLease: ownLease, item: item,
				lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
			}
			go l.watch()
			return l, nil
		}
		if !errors.Is(err, ErrItemHeld) {
			return nil, err
		}
		select {
		case <-ka.Lost():
			return nil, ka.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(c.backoff(attempt)):
		}
	}
}

// watch closes lost at the first sign of trouble. Jeopardy is enough: a
// holder that may lose its lease soon must stop using the token now, even if
// a late renewal then saves the lease.
func (l *Lock) watch() {
	defer close(l.done)
	defer close(l.lost)
	select {
	case <-l.ka.Jeopardy():
	case <-l.stop:
	}
}

// Key returns the locked item's key.
func (l *Lock) Key() string { return l.key }

// LeaseID returns the lease the item is attached to.
func (l *Lock) LeaseID() int64 { return l.ka.ID() }

// Token returns the fencing token: the item's revision when it was acquired.
func (l *Lock) Token() uint64 { return l.item.Revision }

// Lost returns a channel closed when ownership may be lost (the lease is in
// jeopardy or lost) or the lock was released.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Release detaches the item and, for a lock made by Lock, revokes its lease.
// An item or lease already gone counts as released.
func (l *Lock) Release(ctx context.Context) error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	err := l.c.Detach(ctx, l.ka.ID(), l.key)
	if errors.Is(err, ErrItemNotFound) || errors.Is(err, ErrLeaseNotFound) || errors.Is(err, ErrItemHeld) {
		// Absent, or another holder took it after our lease expired:
		// either way it is not ours any more.
		err = nil
	}
	if l.ownLease {
		l.ka.Close()
		if rerr := l.c.Revoke(ctx, l.ka.ID()); rerr != nil && !errors.Is(rerr, ErrLeaseNotFound) && err == nil {
			err = rerr
		}
	}
	return err
}
