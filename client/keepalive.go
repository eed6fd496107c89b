package client

import (
	"context"
	"fmt"
	"time"

	"github.com/leasecluster/leasecluster/leasepb"
)

// SafetyMargin is subtracted from a lease's TTL when computing its local
// deadline: 2% of the TTL plus 1 ms. It covers the rate drift between the
// client's and the server's monotonic clocks (well under 2% on real hardware)
// and rounding of TTLs to milliseconds. ARCHITECTURE.md rule 2: a renewal sent
// at s and acknowledged keeps the lease until s + TTL; the client relies on it
// until s + TTL - SafetyMargin(TTL).
func SafetyMargin(ttl time.Duration) time.Duration { return ttl/50 + time.Millisecond }

// State is the health of a kept-alive lease.
type State int

const (
	// StateHealthy: the local deadline is more than TTL/3 away.
	StateHealthy State = iota
	// StateJeopardy: less than TTL/3 is left before the local deadline and no
	// renewal has been acknowledged since; the lease may be lost soon.
	StateJeopardy
	// StateLost: the server said NOT_FOUND, the local deadline passed, or the
	// KeepAlive was closed. Renewals have stopped.
	StateLost
)

func (s State) String() string {
	switch s {
	case StateHealthy:
		return "healthy"
	case StateJeopardy:
		return "jeopardy"
	case StateLost:
		return "lost"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// KeepAlive keeps one lease alive over the client's shared KeepAlive stream.
// Several KeepAlives may exist for one lease ID; the lease is renewed while
// any of them is open.
type KeepAlive struct {
	m *keepAliveManager
	e *kaLease

	// Guarded by m.mu.
	lost   chan struct{} // closed when this handle stops: lease lost or Close
	err    error         // why lost was closed
	closed bool
}

// ID returns the lease ID.
func (k *KeepAlive) ID() int64 { return k.e.id }

// TTL returns the lease's TTL from the last acknowledged renewal.
func (k *KeepAlive) TTL() time.Duration {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	return k.e.ttl
}

// Deadline returns the local deadline: the client-clock send time of the last
// acknowledged renewal + TTL - SafetyMargin(TTL). The lease is safe to rely
// on until then.
func (k *KeepAlive) Deadline() time.Time {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	return k.e.deadline
}

// State returns the lease's current state as seen by this handle.
func (k *KeepAlive) State() State {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	if k.closed {
		return StateLost
	}
	return k.e.state
}

// Jeopardy returns a channel that is closed when the lease is (or later
// becomes) in jeopardy or lost. When a late acknowledgement brings the lease
// back to healthy, later calls return a fresh channel, so a caller waits on
// Jeopardy() again after each episode.
func (k *KeepAlive) Jeopardy() <-chan struct{} {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	if k.closed {
		return k.lost
	}
	return k.e.jeopardy
}

// Lost returns a channel closed when the lease is lost (ErrLeaseNotFound,
// ErrLeaseExpired) or the KeepAlive or Client is closed (ErrClosed). See Err.
func (k *KeepAlive) Lost() <-chan struct{} { return k.lost }

// Err returns why Lost was closed, or nil while it is open.
func (k *KeepAlive) Err() error {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	return k.err
}

// Close stops keeping the lease alive through this handle (the lease itself
// is not revoked and expires after its TTL unless another handle renews it).
func (k *KeepAlive) Close() {
	k.m.mu.Lock()
	defer k.m.mu.Unlock()
	k.m.detachLocked(k, ErrClosed)
}

// KeepAlive starts renewing lease id every TTL/3 over the client's single
// KeepAlive stream and waits for the first acknowledged renewal, so that the
// returned KeepAlive has a deadline. It fails with ErrLeaseNotFound if the
// lease does not exist, and with ErrNoLeader (wrapping ctx.Err()) if no
// renewal was acknowledged before ctx ended.
func (c *Client) KeepAlive(ctx context.Context, id int64) (*KeepAlive, error) {
	m, err := c.keepAliveManager()
	if err != nil {
		return nil, err
	}
	k, acked := m.add(id)
	select {
	case <-acked:
		if err := k.Err(); err != nil {
			return nil, err
		}
		return k, nil
	case <-ctx.Done():
		k.Close()
		return nil, fmt.Errorf("%w: no renewal of lease %d acknowledged: %w", ErrNoLeader, id, ctx.Err())
	}
}

// Renew renews lease id once (over the shared KeepAlive stream, so it follows
// the leader like every renewal) and returns the lease's TTL.
func (c *Client) Renew(ctx context.Context, id int64) (time.Duration, error) {
	k, err := c.KeepAlive(ctx, id)
	if err != nil {
		return 0, err
	}
	ttl := k.TTL()
	k.Close()
	return ttl, nil
}

func (c *Client) keepAliveManager() (*keepAliveManager, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.ka == nil {
		c.ka = newKeepAliveManager(c)
	}
	return c.ka, nil
}

// kaLease is the manager's record of one kept-alive lease. Guarded by
// keepAliveManager.mu.
type kaLease struct {
	id       int64
	ttl      time.Duration // 0 until the first acknowledgement
	deadline time.Time     // zero until the first acknowledgement
	sentAt   time.Time     // when the renewal in flight on the current session was queued; zero if none
	nextSend time.Time
	state    State
	jeopardy chan struct{} // closed on entering jeopardy or loss; replaced on recovery
	handles  map[*KeepAlive]struct{}
	waiters  []chan struct{} // closed on the next acknowledgement or loss
	// later holds waiters that arrived while a renewal was in flight: that
	// renewal was sent before they asked, so its acknowledgement does not
	// vouch for them (rule 2 counts from the send time); they wait for the
	// next one, which is sent as soon as the one in flight is answered.
	later []chan struct{}
}

func (m *keepAliveManager) add(id int64) (*KeepAlive, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.leases[id]
	if e == nil {
		e = &kaLease{id: id, jeopardy: make(chan struct{}), handles: make(map[*KeepAlive]struct{})}
		m.leases[id] = e
	}
	k := &KeepAlive{m: m, e: e, lost: make(chan struct{})}
	e.handles[k] = struct{}{}
	acked := make(chan struct{})
	if e.sentAt.IsZero() {
		// A new handle wants a fresh acknowledgement: send now rather than
		// at the next TTL/3 tick.
		e.waiters = append(e.waiters, acked)
		e.nextSend = time.Time{}
	} else {
		e.later = append(e.later, acked)
	}
	if m.stopped {
		m.detachLocked(k, ErrClosed)
	}
	m.wakeup()
	return k, acked
}

// detachLocked closes handle k with err and forgets the lease when no handle is left.
func (m *keepAliveManager) detachLocked(k *KeepAlive, err error) {
	if k.closed {
		return
	}
	k.closed = true
	k.err = err
	close(k.lost)
	e := k.e
	delete(e.handles, k)
	if len(e.handles) == 0 {
		m.abandonLocked(e)
		if m.leases[e.id] == e {
			delete(m.leases, e.id)
		}
		for _, w := range append(e.waiters, e.later...) {
			close(w)
		}
		e.waiters, e.later = nil, nil
	}
}

// loseLocked marks the lease lost for every handle and stops renewing it.
func (m *keepAliveManager) loseLocked(e *kaLease, err error) {
	m.c.cfg.logger.Warn("lease lost", "lease_id", e.id, "error", err)
	m.abandonLocked(e)
	e.state = StateLost
	select {
	case <-e.jeopardy:
	default:
		close(e.jeopardy)
	}
	for k := range e.handles {
		m.detachLocked(k, err)
	}
	for _, w := range append(e.waiters, e.later...) {
		close(w)
	}
	e.waiters, e.later = nil, nil
	if m.leases[e.id] == e {
		delete(m.leases, e.id)
	}
}

// ackLocked applies one KeepAliveResponse. It reports false when the response
// carries an error other than NOT_FOUND, which means the stream's node cannot
// renew (it lost leadership, say), so the session should be replaced.
func (m *keepAliveManager) ackLocked(resp *leasepb.KeepAliveResponse) bool {
	e := m.leases[resp.GetId()]
	if e == nil || e.sentAt.IsZero() {
		return true // a lease no longer kept alive, or an answer we did not ask for
	}
	sent := e.sentAt
	e.sentAt = time.Time{}
	switch {
	case resp.GetError() == "" && resp.GetTtlMs() > 0:
	case resp.GetError() == "" || resp.GetError() == "NOT_FOUND":
		m.observeLocked(e, sent, RenewalNotFound, 0, resp.GetError())
		m.loseLocked(e, fmt.Errorf("%w: lease %d", ErrLeaseNotFound, e.id))
		return true
	case resp.GetError() == "PERMISSION_DENIED":
		// The lease belongs to another identity: asking again changes nothing.
		m.observeLocked(e, sent, RenewalRefused, 0, resp.GetError())
		m.loseLocked(e, fmt.Errorf("%w: lease %d", ErrPermissionDenied, e.id))
		return true
	default:
		m.observeLocked(e, sent, RenewalRefused, 0, resp.GetError())
		e.nextSend = time.Time{}
		m.c.cfg.logger.Debug("renewal refused", "lease_id", e.id, "error", resp.GetError())
		return false
	}
	ttl := time.Duration(resp.GetTtlMs()) * time.Millisecond
	m.observeLocked(e, sent, RenewalAcked, ttl, "")
	e.ttl = ttl
	if d := sent.Add(ttl - SafetyMargin(ttl)); d.After(e.deadline) {
		e.deadline = d
	}
	e.nextSend = sent.Add(ttl / 3)
	if e.state == StateJeopardy && time.Now().Before(e.deadline.Add(-ttl/3)) {
		e.state = StateHealthy
		e.jeopardy = make(chan struct{})
	}
	for _, w := range e.waiters {
		close(w)
	}
	e.waiters, e.later = e.later, nil
	if len(e.waiters) > 0 {
		e.nextSend = time.Time{}
	}
	return true
}
