package client

import "time"

// RenewalOutcome is what became of one renewal sent by KeepAlive.
type RenewalOutcome int

const (
	// RenewalAcked: the server renewed the lease for TTL from (at the
	// latest) the send time; the client relies on it until Sent + TTL -
	// SafetyMargin(TTL).
	RenewalAcked RenewalOutcome = iota
	// RenewalNotFound: the server answered that the lease does not exist.
	RenewalNotFound
	// RenewalRefused: the server answered with another error (not the
	// leader, permission denied, ...); Err says which. The client did not
	// count it as a renewal.
	RenewalRefused
	// RenewalUnknown: no answer will be read (the stream was replaced, the
	// last handle closed or the client closed while it was in flight); the
	// server may or may not have renewed the lease.
	RenewalUnknown
)

func (o RenewalOutcome) String() string {
	switch o {
	case RenewalAcked:
		return "acked"
	case RenewalNotFound:
		return "not-found"
	case RenewalRefused:
		return "refused"
	case RenewalUnknown:
		return "unknown"
	}
	return "RenewalOutcome(?)"
}

// RenewalEvent describes one renewal sent by the KeepAlive manager, reported
// once its outcome is known (or given up on).
type RenewalEvent struct {
	LeaseID int64
	// Sent is when the renewal was queued for sending, on this process's
	// clock (with its monotonic reading): the time KeepAlive's deadline
	// counts from.
	Sent time.Time
	// Acked is when the answer was read; for RenewalUnknown, when the
	// renewal was given up.
	Acked   time.Time
	TTL     time.Duration // RenewalAcked: the TTL the server renewed for
	Outcome RenewalOutcome
	Err     string // RenewalNotFound, RenewalRefused: the server's error
}

// WithRenewalObserver makes the client call f once for every renewal its
// KeepAlive manager sends (KeepAlive, Renew, Lock), in order per lease. It
// exists for test harnesses (the chaos harness records lock leases'
// renewals with it, so that it knows their exact deadlines).
//
// f runs synchronously on the manager's goroutine, or on the goroutine of a
// KeepAlive.Close or Client.Close, while the manager's lock is held: it must
// return quickly and must not call the Client. Without this option no event
// is built.
func WithRenewalObserver(f func(RenewalEvent)) Option {
	return func(c *config) { c.renewalObserver = f }
}

// observeLocked reports one renewal of e, if anyone listens. m.mu is held.
func (m *keepAliveManager) observeLocked(e *kaLease, sent time.Time, out RenewalOutcome, ttl time.Duration, errText string) {
	f := m.c.cfg.renewalObserver
	if f == nil || sent.IsZero() {
		return
	}
	f(RenewalEvent{LeaseID: e.id, Sent: sent, Acked: time.Now(), TTL: ttl, Outcome: out, Err: errText})
}

// abandonLocked gives up the renewal of e in flight, if any: its answer
// will not be read. m.mu is held.
func (m *keepAliveManager) abandonLocked(e *kaLease) {
	m.observeLocked(e, e.sentAt, RenewalUnknown, 0, "")
	e.sentAt = time.Time{}
}
