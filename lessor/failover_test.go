package lessor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// A model of a three-node cluster for the lessor alone: three lessors are fed
// the same replicated commands (Grant, Revoke, Checkpoint batches the current
// primary yields, and resets) in one log order, the way the FSM applies a
// Raft log on every node. The server proposes revokes and checkpoint batches
// after a random delay (so a client's reset may overtake a checkpoint yielded
// before it), and they apply after a random replication delay; a Grant or a
// reset waits for everything before it in the log, as raft.Apply does. Leadership moves at random moments: Demote the primary,
// drop a random uncommitted tail of the log, a short gap, then
// Promote(extend) another node (after a Barrier: the committed log is
// applied). Clients renew some leases every TTL/3, others at random intervals
// up to 0.9 x TTL (so renewals meet checkpoints in flight), for a while, and
// then stop; a third are never renewed.
//
// Checked, per ARCHITECTURE.md "Time and safety rules":
//   - rule 2, no early expiry: no lease is ever delivered as expired (nor
//     refused with ErrLeaseExpired) before its last renewal + TTL;
//   - rule 3, bounded expiry: an unrenewed lease is delivered as expired
//     within 2 x TTL + extend + failover gap (+ replication slack) of its last
//     renewal, however many leader changes happen;
//   - Data flow, Expiry: only the primary of the moment delivers anything;
//   - rule 1: all three replicas end with the same State().

type modelEvent struct {
	node    int
	at      time.Time
	expired []LeaseID
	cps     []Checkpoint
}

// modelEntry is a replicated command waiting to be applied on every node.
type modelEntry struct {
	applyAt time.Time
	revoke  LeaseID
	cps     []Checkpoint
}

type modelLease struct {
	ttl        time.Duration
	every      time.Duration // renewal interval; 0: random up to 0.9 x TTL
	grantAt    time.Time     // when the client grants it
	stopAt     time.Time     // the client renews until then
	granted    bool
	lastRenew  time.Time
	nextRenew  time.Time
	delivered  time.Time // first delivery as expired, by the primary of the moment
	revoked    bool
	queued     bool // a revoke is in the log
	deliveries int
}

func TestBoundedExpiryAcrossFailovers(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runFailoverModel(t, seed) })
		})
	}
}

func runFailoverModel(t *testing.T, seed uint64) {
	const (
		nodes      = 3
		nLeases    = 120
		simTime    = 60 * time.Second
		maxGap     = 100 * time.Millisecond // failover time: no primary
		maxStep    = 10 * time.Millisecond  // how often the model looks
		maxDelay   = 30 * time.Millisecond  // proposal delay, and replication delay
		maxExtend  = 800 * time.Millisecond
		minTerm    = 200 * time.Millisecond
		maxTerm    = 4 * time.Second
		slack      = maxGap + 2*maxDelay + 3*maxStep + 20*time.Millisecond
		finalDrain = 12 * time.Second
	)
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }

	var (
		mu     sync.Mutex
		events []modelEvent
	)
	les := make([]*lessor, nodes)
	stops := make(chan struct{})
	var readers sync.WaitGroup
	for i := range les {
		les[i] = newTest(t, Config{})
		readers.Add(1)
		go func(i int, le *lessor) {
			defer readers.Done()
			for {
				select {
				case <-stops:
					return
				case b := <-le.ExpiredLeasesC():
					ids := make([]LeaseID, len(b))
					for j, l := range b {
						ids[j] = l.ID
					}
					mu.Lock()
					events = append(events, modelEvent{node: i, at: time.Now(), expired: ids})
					mu.Unlock()
				case b := <-le.CheckpointsC():
					mu.Lock()
					events = append(events, modelEvent{node: i, at: time.Now(), cps: b})
					mu.Unlock()
				}
			}
		}(i, les[i])
	}
	defer func() { close(stops); readers.Wait() }()

	start := time.Now()
	rel := func(at time.Time) time.Duration { return at.Sub(start) }

	// Terms: which node was primary when, to check who delivers.
	type term struct {
		node     int
		from, to time.Time // to is zero while it lasts
	}
	var terms []term
	wasPrimary := func(node int, at time.Time) bool {
		for _, tm := range terms {
			if tm.node == node && !at.Before(tm.from) && (tm.to.IsZero() || !at.After(tm.to)) {
				return true
			}
		}
		return false
	}
	primary := -1
	promote := func(n int) {
		extend := between(0, maxExtend)
		les[n].Promote(extend)
		primary = n
		terms = append(terms, term{node: n, from: time.Now()})
	}
	demote := func() {
		les[primary].Demote()
		terms[len(terms)-1].to = time.Now()
		primary = -1
	}

	ttls := []time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond, 4 * time.Second}
	leases := map[LeaseID]*modelLease{}
	for i := LeaseID(1); i <= nLeases; i++ {
		m := &modelLease{ttl: ttls[rng.IntN(len(ttls))]}
		m.grantAt = start.Add(between(0, 20*time.Second))
		switch rng.IntN(3) {
		case 0: // never renewed
			m.stopAt = m.grantAt
		case 1:
			m.every = m.ttl / 3
			m.stopAt = m.grantAt.Add(between(0, 35*time.Second))
		default:
			m.stopAt = m.grantAt.Add(between(0, 35*time.Second))
		}
		leases[i] = m
	}

	failures := 0
	fail := func(format string, args ...any) {
		t.Helper()
		failures++
		if failures <= 20 {
			t.Errorf(format, args...)
		}
	}

	// The replicated log: entries apply on every node in order.
	var log []modelEntry
	apply := func(e modelEntry) {
		if e.revoke != 0 {
			m := leases[e.revoke]
			for _, le := range les {
				if err := le.Revoke(e.revoke); err != nil && !m.revoked {
					fail("Revoke(%d) on a replica: %v", e.revoke, err)
				}
			}
			m.revoked = true
			return
		}
		for _, le := range les {
			le.Checkpoint(e.cps)
		}
	}
	applyDue := func(now time.Time) {
		for len(log) > 0 && !log[0].applyAt.After(now) {
			e := log[0]
			log = log[1:]
			apply(e)
		}
	}
	flush := func() { // a command that waits for everything before it
		for _, e := range log {
			apply(e)
		}
		log = nil
	}
	var proposals []modelEntry // yielded, not yet proposed; applyAt is when to propose
	proposeLater := func(e modelEntry) {
		e.applyAt = time.Now().Add(between(0, maxDelay))
		proposals = append(proposals, e)
	}
	propose := func(e modelEntry) {
		e.applyAt = time.Now().Add(between(0, maxDelay))
		if n := len(log); n > 0 && e.applyAt.Before(log[n-1].applyAt) {
			e.applyAt = log[n-1].applyAt
		}
		log = append(log, e)
	}

	process := func() {
		synctest.Wait()
		mu.Lock()
		evs := events
		events = nil
		mu.Unlock()
		now := time.Now()
		for _, ev := range evs {
			if !wasPrimary(ev.node, ev.at) {
				fail("node %d delivered at %v while not primary", ev.node, rel(ev.at))
				continue
			}
			for _, id := range ev.expired {
				m := leases[id]
				m.deliveries++
				if ev.at.Before(m.lastRenew.Add(m.ttl)) {
					fail("EARLY EXPIRY: lease %d (ttl %v) delivered at %v, last renewed at %v", id, m.ttl, rel(ev.at), rel(m.lastRenew))
				}
				if m.delivered.IsZero() {
					m.delivered = ev.at
				}
			}
			if ev.node != primary {
				continue // its proposals fail: leadership is gone
			}
			for _, id := range ev.expired {
				m := leases[id]
				if !m.revoked && !m.queued && les[primary].Expired(id) {
					m.queued = true
					proposeLater(modelEntry{revoke: id})
				}
			}
			if len(ev.cps) > 0 {
				proposeLater(modelEntry{cps: ev.cps})
			}
		}
		rest := proposals[:0]
		for _, e := range proposals {
			if e.applyAt.After(now) {
				rest = append(rest, e)
			} else {
				propose(e)
			}
		}
		proposals = rest
		applyDue(now)
	}

	clients := func(now time.Time) {
		for id := LeaseID(1); id <= nLeases; id++ {
			m := leases[id]
			if !m.granted && !now.Before(m.grantAt) && primary >= 0 {
				flush()
				for _, le := range les {
					mustGrant(t, le, id, m.ttl.Milliseconds())
				}
				m.granted, m.lastRenew, m.nextRenew = true, now, now.Add(m.ttl/3)
				continue
			}
			if !m.granted || m.revoked || primary < 0 || now.Before(m.nextRenew) || !now.Before(m.stopAt) {
				continue
			}
			_, err := les[primary].Renew(id)
			if errors.Is(err, ErrResetRequired) {
				// Replicate the reset (after everything already in the
				// log), then renew.
				flush()
				for _, le := range les {
					le.Checkpoint([]Checkpoint{{ID: id}})
				}
				_, err = les[primary].Renew(id)
			}
			switch {
			case err == nil:
				every := m.every
				if every == 0 {
					every = between(m.ttl/4, m.ttl*9/10)
				}
				m.lastRenew, m.nextRenew = now, now.Add(every)
			case errors.Is(err, ErrLeaseExpired):
				if now.Before(m.lastRenew.Add(m.ttl)) {
					fail("EARLY EXPIRY: Renew(%d) at %v refused as expired, last renewed at %v (ttl %v)", id, rel(now), rel(m.lastRenew), m.ttl)
				}
				m.stopAt = now
			case errors.Is(err, ErrLeaseNotFound), errors.Is(err, ErrLeaseExpired) && m.queued:
				m.stopAt = now
			default:
				fail("Renew(%d) = %v", id, err)
			}
		}
	}

	promote(0)
	nextFailover := start.Add(between(minTerm, maxTerm))
	failovers := 0
	for time.Since(start) < simTime {
		time.Sleep(between(time.Millisecond, maxStep))
		process()
		now := time.Now()
		clients(now)
		if !now.Before(nextFailover) {
			process()
			old := primary
			demote()
			// Proposals not yet made fail, and a random tail of the log
			// was never committed.
			committed := rng.IntN(len(log) + 1)
			for _, e := range append(log[committed:], proposals...) {
				if e.revoke != 0 {
					leases[e.revoke].queued = false
				}
			}
			log, proposals = log[:committed], nil
			time.Sleep(between(0, maxGap))
			process()
			flush() // Barrier
			next := (old + 1 + rng.IntN(nodes-1)) % nodes
			promote(next)
			failovers++
			nextFailover = time.Now().Add(between(minTerm, maxTerm))
		}
	}
	// Let everything left run out under the last primary.
	for end := time.Now().Add(finalDrain); time.Now().Before(end); {
		time.Sleep(maxStep)
		process()
	}
	flush()

	checked, worst := 0, 0.0
	for id := LeaseID(1); id <= nLeases; id++ {
		m := leases[id]
		if !m.granted {
			fail("lease %d never granted", id)
			continue
		}
		// Every lease stops being renewed before the end of the run.
		bound := m.lastRenew.Add(2*m.ttl + maxExtend + slack)
		if m.delivered.IsZero() {
			fail("lease %d (ttl %v, last renewed %v) never delivered as expired", id, m.ttl, rel(m.lastRenew))
			continue
		}
		if m.delivered.After(bound) {
			fail("BOUNDED EXPIRY: lease %d (ttl %v) last renewed at %v, delivered at %v: %v after, bound 2xTTL+extend+gap = %v",
				id, m.ttl, rel(m.lastRenew), rel(m.delivered), m.delivered.Sub(m.lastRenew), bound.Sub(m.lastRenew))
		}
		if !m.revoked {
			fail("lease %d delivered but never revoked", id)
		}
		worst = max(worst, float64(m.delivered.Sub(m.lastRenew))/float64(bound.Sub(m.lastRenew)))
		checked++
	}
	st0 := les[0].State()
	for i := 1; i < nodes; i++ {
		if st := les[i].State(); !equalStates(st0, st) {
			fail("replica %d state differs from replica 0", i)
		}
	}
	if len(st0) != 0 {
		fail("%d leases left after the drain", len(st0))
	}
	t.Logf("seed %d: %d failovers, %d leases checked; latest delivery at %.0f%% of the bound 2 x TTL + %v",
		seed, failovers, checked, 100*worst, maxExtend+slack)
}
