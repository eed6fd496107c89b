package lessor

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// newTest returns a stopped-at-cleanup lessor built from cfg, which must be
// valid. Inside a synctest bubble its clock is the bubble's fake clock.
func newTest(t testing.TB, cfg Config) *lessor {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", cfg, err)
	}
	le := newLessor(cfg)
	t.Cleanup(le.Stop)
	return le
}

// sweepTest returns a lessor (newTest, default Config) holding leases 1..n
// of ttl ms, whose Promote schedules them in a background sweep that
// handles sweepSize leases per hold of the lock.
func sweepTest(t testing.TB, sweepSize, n int, ttl int64) *lessor {
	t.Helper()
	le := newTest(t, Config{})
	le.sweepSize = sweepSize
	for i := LeaseID(1); i <= LeaseID(n); i++ {
		mustGrant(t, le, i, ttl)
	}
	return le
}

// expHeapLen is the number of leases in the primary's expiry heap.
func expHeapLen(le *lessor) int {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.expHeap.Len()
}

func mustGrant(t testing.TB, le Lessor, id LeaseID, ttl int64) *Lease {
	t.Helper()
	l, err := le.Grant(id, ttl)
	if err != nil {
		t.Fatalf("Grant(%d, %d) = %v", id, ttl, err)
	}
	return l
}

func items(keys ...string) []LeaseItem {
	out := make([]LeaseItem, len(keys))
	for i, k := range keys {
		out[i] = LeaseItem{Key: k}
	}
	return out
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// expiryOf returns l's scheduled expiry as an absolute fake time.
func expiryOf(le *lessor, l *Lease) time.Time {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.base.Add(time.Duration(l.expiry))
}

// collector drains a lessor's ExpiredLeasesC in the background and records
// when (on the lessor's clock) each lease was delivered.
type collector struct {
	mu      sync.Mutex
	batches [][]LeaseID
	first   map[LeaseID]time.Time
	times   map[LeaseID][]time.Time
	stop    chan struct{}
	done    chan struct{}
}

func collect(t testing.TB, le Lessor) *collector {
	c := &collector{first: map[LeaseID]time.Time{}, times: map[LeaseID][]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			case b := <-le.ExpiredLeasesC():
				now := time.Now()
				c.mu.Lock()
				ids := make([]LeaseID, len(b))
				for i, l := range b {
					ids[i] = l.ID
					if _, ok := c.first[l.ID]; !ok {
						c.first[l.ID] = now
					}
					c.times[l.ID] = append(c.times[l.ID], now)
				}
				c.batches = append(c.batches, ids)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *collector) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

func (c *collector) firstTime(id LeaseID) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.first[id]
	return at, ok
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.first)
}

func (c *collector) deliveries(id LeaseID) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.times[id])
}

func (c *collector) allBatches() [][]LeaseID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.batches)
}

// drainCheckpoints returns every checkpoint batch waiting on le's channel.
func drainCheckpoints(le Lessor) [][]Checkpoint {
	var out [][]Checkpoint
	for {
		select {
		case b := <-le.CheckpointsC():
			out = append(out, b)
		default:
			return out
		}
	}
}

func flatten(bs [][]Checkpoint) []Checkpoint {
	var out []Checkpoint
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// renewReset renews id the way the server does (ARCHITECTURE.md rule 3):
// on ErrResetRequired it replicates a reset to every replica and renews again.
func renewReset(le Lessor, id LeaseID, replicas ...Lessor) (int64, error) {
	ttl, err := le.Renew(id)
	if !errors.Is(err, ErrResetRequired) {
		return ttl, err
	}
	if len(replicas) == 0 {
		replicas = []Lessor{le}
	}
	for _, r := range replicas {
		r.Checkpoint([]Checkpoint{{ID: id, Remaining: 0}})
	}
	return le.Renew(id)
}

// recDeleter records what a revoke deletes.
type recDeleter struct {
	mu   sync.Mutex
	txns int
	ends int
	keys []string
}

type recTxn struct{ d *recDeleter }

func (r recTxn) DeleteRange(key, end []byte) (int64, int64) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	r.d.keys = append(r.d.keys, string(key))
	return 1, 0
}

func (r recTxn) End() {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	r.d.ends++
}

func (d *recDeleter) deleter() RangeDeleter {
	return func() TxnDelete {
		d.mu.Lock()
		d.txns++
		d.mu.Unlock()
		return recTxn{d}
	}
}
