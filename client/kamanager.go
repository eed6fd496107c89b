package client

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

// sendQueue bounds the renewals queued on one session; beyond it the manager
// retries on its next tick rather than block its loop on a slow stream.
const sendQueue = 4096

// keepAliveManager owns the client's one KeepAlive stream (a "session") and
// the schedule of every kept-alive lease. One goroutine (run) makes every
// decision; per session, one goroutine receives and one sends, and they only
// talk to run through events.
type keepAliveManager struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: "the lease set changed"
	events chan kaEvent
	wg     sync.WaitGroup // run and the session goroutines

	mu      sync.Mutex // guards leases, stopped and every kaLease/KeepAlive field it notes
	leases  map[int64]*kaLease
	stopped bool
}

type kaEventKind int

const (
	evResp kaEventKind = iota
	evClosed
)

type kaEvent struct {
	gen  int
	kind kaEventKind
	resp *leasepb.KeepAliveResponse
	err  error
}

// kaSession is one KeepAlive stream to one node.
type kaSession struct {
	gen    int
	target string
	cancel context.CancelFunc
	sendCh chan int64
}

func newKeepAliveManager(c *Client) *keepAliveManager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &keepAliveManager{
		c:      c,
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		events: make(chan kaEvent),
		leases: make(map[int64]*kaLease),
	}
	m.wg.Go(m.run)
	return m
}

func (m *keepAliveManager) wakeup() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// stop ends the manager: every KeepAlive reports ErrClosed.
func (m *keepAliveManager) stop() {
	m.cancel()
	m.wg.Wait()
}

func (m *keepAliveManager) run() {
	var sess *kaSession
	gen := 0
	var reconnectAt time.Time
	failures := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	closeSession := func(failed bool, hint string) {
		sess.cancel()
		now := time.Now()
		switch {
		case !failed:
			reconnectAt = now
		case hint != "" && hint != sess.target && failures < maxRedirects:
			m.c.noteLeader(hint)
			failures++
			reconnectAt = now
		default:
			m.c.forget(sess.target)
			failures++
			reconnectAt = now.Add(m.c.backoff(failures))
		}
		sess = nil
	}
	for {
		now := time.Now()
		if sess == nil && m.active() && !now.Before(reconnectAt) {
			gen++
			sess = m.startSession(gen)
		}
		next, stalled := m.tick(now, sess)
		if stalled {
			m.c.cfg.logger.Debug("keepalive stream stalled", "target", sess.target)
			closeSession(true, "")
			continue
		}
		if sess == nil && m.active() && reconnectAt.Before(next) {
			next = reconnectAt
		}
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-m.ctx.Done():
			if sess != nil {
				sess.cancel()
			}
			m.mu.Lock()
			m.stopped = true
			for _, e := range m.leases {
				for k := range e.handles {
					m.detachLocked(k, ErrClosed)
				}
			}
			m.mu.Unlock()
			return
		case <-m.wake:
		case <-timer.C:
		case ev := <-m.events:
			if sess == nil || ev.gen != sess.gen {
				continue // from a session already replaced
			}
			switch ev.kind {
			case evResp:
				m.mu.Lock()
				ok := m.ackLocked(ev.resp)
				m.mu.Unlock()
				if !ok {
					closeSession(true, "")
				} else if ev.resp.GetError() == "" {
					failures = 0
				}
			case evClosed:
				hint := ""
				if st, ok := status.FromError(ev.err); ok {
					hint = leaderHint(st)
				}
				m.c.cfg.logger.Debug("keepalive stream ended", "target", sess.target, "error", ev.err, "leader", hint)
				closeSession(true, hint)
			}
		}
	}
}

func (m *keepAliveManager) active() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.leases) > 0
}

// startSession opens a stream to the current leader guess. Renewals in flight
// on the previous session will never be answered, so every lease is renewed
// at once on the new one (which also renews promptly on a new leader).
func (m *keepAliveManager) startSession(gen int) *kaSession {
	target := m.c.pick()
	ctx, cancel := context.WithCancel(m.ctx)
	s := &kaSession{gen: gen, target: target, cancel: cancel, sendCh: make(chan int64, sendQueue)}
	m.mu.Lock()
	for _, e := range m.leases {
		m.abandonLocked(e)
		e.nextSend = time.Time{}
		// The renewal in flight is abandoned; the next one is sent after
		// every waiter arrived, so all of them may wait for it.
		e.waiters, e.later = append(e.waiters, e.later...), nil
	}
	m.mu.Unlock()
	post := func(ev kaEvent) {
		select {
		case m.events <- ev:
		case <-ctx.Done():
		}
	}
	m.wg.Go(func() {
		cc, err := m.c.conn(target)
		if err != nil {
			post(kaEvent{gen: gen, kind: evClosed, err: err})
			return
		}
		stream, err := leasepb.NewLeasesClient(cc).KeepAlive(ctx)
		if err != nil {
			post(kaEvent{gen: gen, kind: evClosed, err: err})
			return
		}
		m.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-s.sendCh:
					if stream.Send(&leasepb.KeepAliveRequest{Id: id}) != nil {
						return // Recv reports the stream's error
					}
				}
			}
		})
		for {
			resp, err := stream.Recv()
			if err != nil {
				post(kaEvent{gen: gen, kind: evClosed, err: err})
				return
			}
			post(kaEvent{gen: gen, kind: evResp, resp: resp})
		}
	})
	return s
}

// tick queues due renewals, moves leases into jeopardy or loss by their local
// deadlines, and returns when it next needs to run. stalled reports a renewal
// unanswered for longer than its stall timeout, i.e. a stream that looks open
// but no longer works (a partitioned leader), which must be replaced.
//
// It scans every lease; a client keeps few enough leases for that to be cheap.
func (m *keepAliveManager) tick(now time.Time, sess *kaSession) (next time.Time, stalled bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next = now.Add(time.Hour)
	for _, e := range m.leases {
		if !e.deadline.IsZero() {
			if !now.Before(e.deadline) {
				m.loseLocked(e, ErrLeaseExpired)
				continue
			}
			if j := e.deadline.Add(-e.ttl / 3); !now.Before(j) {
				if e.state == StateHealthy {
					m.c.cfg.logger.Warn("lease in jeopardy", "lease_id", e.id, "deadline", e.deadline)
					e.state = StateJeopardy
					close(e.jeopardy)
				}
			} else {
				next = earliest(next, j)
			}
			next = earliest(next, e.deadline)
		}
		if sess == nil {
			continue
		}
		if !e.sentAt.IsZero() {
			s := e.sentAt.Add(m.stallTimeout(e))
			if !now.Before(s) {
				stalled = true
			}
			next = earliest(next, s)
			continue
		}
		if now.Before(e.nextSend) {
			next = earliest(next, e.nextSend)
			continue
		}
		select {
		case sess.sendCh <- e.id:
			// Queue time, not wire time: earlier, so the deadline it
			// yields is conservative.
			e.sentAt = now
			next = earliest(next, now.Add(m.stallTimeout(e)))
		default:
			next = earliest(next, now.Add(10*time.Millisecond))
		}
	}
	return next, stalled
}

// stallTimeout is how long a renewal may go unanswered before the stream is
// presumed broken: TTL/3 (by then the next renewal is due anyway), at most
// the request timeout.
func (m *keepAliveManager) stallTimeout(e *kaLease) time.Duration {
	d := m.c.cfg.requestTimeout
	if e.ttl > 0 {
		d = min(d, e.ttl/3)
	}
	return d
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
