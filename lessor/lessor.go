package lessor

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// LeaseID identifies a lease. Valid IDs are positive.
type LeaseID int64

// NoLease is a special LeaseID representing the absence of a lease.
const NoLease = LeaseID(0)

var (
	ErrNotPrimary    = errors.New("lessor: not a primary lessor")
	ErrLeaseNotFound = errors.New("lessor: lease not found")
	ErrLeaseExists   = errors.New("lessor: lease already exists")
	// ErrLeaseExpired is returned by Renew for a lease the primary has already
	// seen expire: it is about to be revoked and may not be renewed.
	ErrLeaseExpired = errors.New("lessor: lease expired")
	// ErrResetRequired is returned by Renew for a lease that carries a
	// checkpointed remainder or has a checkpoint in flight. Replicate a
	// Checkpoint{ID: id, Remaining: 0} and renew again.
	ErrResetRequired = errors.New("lessor: renewal must first replicate a checkpoint reset")
	ErrItemHeld      = errors.New("lessor: item is attached to another lease")
	ErrItemNotFound  = errors.New("lessor: item is not attached to any lease")
	ErrInvalidID     = errors.New("lessor: lease ID must be positive")
	ErrInvalidTTL    = errors.New("lessor: TTL out of range")
	ErrInvalidItem   = errors.New("lessor: item key must not be empty")
	// ErrPermissionDenied refuses a client revoke, an attach or a detach
	// whose caller is neither the lease's owner nor an admin. The lessor
	// itself never returns it: the FSM checks ownership on apply
	// (ARCHITECTURE.md rule 10).
	ErrPermissionDenied = errors.New("lessor: permission denied")
)

// LeaseItem is something a lease holds; in leasecluster, an item key.
type LeaseItem struct {
	Key string
}

// Checkpoint carries a lease's remaining TTL to every replica. Remaining 0 is
// a reset: it clears the lease's remainder and advances its generation. A
// non-zero checkpoint applies only if Gen still equals the lease's generation.
type Checkpoint struct {
	ID        LeaseID
	Remaining int64 // milliseconds; 0 resets
	Gen       uint64
}

// Renewal is one renewal of RenewAll: the lease, and what Renew would return.
type Renewal struct {
	ID  LeaseID
	TTL int64
	Err error
}

// LeaseState is the replicated state of one lease: what snapshots hold and
// what replicas compare.
type LeaseState struct {
	ID        LeaseID
	TTL       int64 // milliseconds
	Remaining int64 // checkpointed remainder in milliseconds; 0 if none
	Gen       uint64
	Keys      []string // sorted
	Owner     string   // the identity that granted it; "" if none
}

// TxnDelete is a transaction that only permits deletes. The lessor deletes a
// revoked lease's items through it, one key at a time in sorted order, then
// calls End once.
type TxnDelete interface {
	DeleteRange(key, end []byte) (n, rev int64)
	End()
}

// RangeDeleter is a TxnDelete constructor.
type RangeDeleter func() TxnDelete

// Clock tells the time. The lessor only measures intervals with it.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Lessor owns leases. It can grant, revoke, renew and modify leases.
type Lessor interface {
	// SetRangeDeleter sets how a revoke deletes the lease's items.
	SetRangeDeleter(rd RangeDeleter)
	// Grant grants a lease that expires at least ttl milliseconds after it is
	// granted (on a primary) or after a later Promote. ttl is used as given
	// (1..TTLCeiling, else ErrInvalidTTL): raising a short request to the
	// minimum is the proposer's job, so that every replica applies the same
	// TTL.
	Grant(id LeaseID, ttl int64) (*Lease, error)
	// GrantOwned is Grant of a lease owned by owner, the identity that
	// granted it ("" is no owner: Grant). The lessor records the owner,
	// returns it from Lease.Owner, State and Recover, and enforces nothing:
	// who may act on an owned lease is the FSM's rule (ARCHITECTURE.md
	// rule 10), and owner's limits are package limits'.
	GrantOwned(id LeaseID, ttl int64, owner string) (*Lease, error)
	// Revoke removes a lease and deletes its items.
	Revoke(id LeaseID) error
	// Attach attaches items to a lease. An item held by another lease fails
	// the whole call with ErrItemHeld.
	Attach(id LeaseID, items []LeaseItem) error
	// GetLease returns the lease holding item, or NoLease.
	GetLease(item LeaseItem) LeaseID
	// Detach detaches items from the lease that holds them.
	Detach(id LeaseID, items []LeaseItem) error
	// Promote makes this lessor the primary: it expires and renews leases.
	// Each lease expires at the earliest at now + extend + its TTL or, when
	// it has a checkpointed remainder, at the time this node applied that
	// checkpoint + the remainder + extend (ARCHITECTURE.md rule 3).
	Promote(extend time.Duration)
	// Demote stops expiry and renewals on this lessor.
	Demote()
	// IsPrimary reports whether the lessor is primary.
	IsPrimary() bool
	// Renew resets a lease's expiry to now + TTL and returns the TTL in ms.
	Renew(id LeaseID) (int64, error)
	// RenewAll renews each rs[i].ID as Renew would and sets rs[i].TTL and
	// rs[i].Err: a batch of renewals under few lock holds and clock reads.
	RenewAll(rs []Renewal)
	// Lookup returns the lease with the given ID, or nil.
	Lookup(id LeaseID) *Lease
	// Leases returns every lease, sorted by ID.
	Leases() []*Lease
	// Len is the number of leases.
	Len() int
	// Expired reports whether the primary has seen the lease expire in its
	// current term: the check to make right before proposing its revoke.
	Expired(id LeaseID) bool
	// ExpiredLeasesC delivers batches of expired leases on a primary.
	ExpiredLeasesC() <-chan []*Lease
	// CheckpointsC delivers batches of checkpoints to replicate, on a primary.
	CheckpointsC() <-chan []Checkpoint
	// Checkpoint applies replicated checkpoints.
	Checkpoint(cps []Checkpoint)
	// State returns the replicated state of every lease, sorted by ID. It
	// is a consistent cut provided no replicated change (Grant, Revoke,
	// Attach, Detach, Checkpoint, Recover) runs concurrently, which the FSM
	// ensures; renewals may.
	State() []LeaseState
	// CopyState is State in no particular order (SortState sorts it): the
	// part that needs the replicated state to stand still, without the sort.
	CopyState() []LeaseState
	// Recover replaces all leases with the given replicated state. Like
	// Grant, it accepts any TTL in 1..TTLCeiling, whatever this node's config.
	Recover(leases []LeaseState, rd RangeDeleter) error
	// Stop ends the lessor's goroutines.
	Stop()
}

// lessor implements Lessor.
type lessor struct {
	cfg      Config
	base     time.Time // origin of the lessor's nanosecond timeline
	expiredC chan []*Lease
	cpC      chan []Checkpoint
	kickC    chan struct{} // wakes the run loop; buffered 1
	stopC    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	// sweepSize: tables this small are scheduled inline by Promote; the
	// sweep (at most yieldEvery) and CopyState handle this many leases per
	// hold of the lock.
	sweepSize int
	// sweepHook, if set (tests only), runs in the sweep goroutine at each
	// sweepStage.
	sweepHook func(sweepStage)
	// yieldHook, if set (tests only, under mu), runs in pauseLocked while
	// the lock is let go.
	yieldHook func()

	// waiting counts callers of lock and rlock waiting for mu: delivery
	// and the application of a checkpoint batch let them in every
	// yieldEvery leases (yieldLocked); Promote's sweep lets the lock go
	// that often in any case.
	waiting atomic.Int32

	mu      sync.RWMutex // guards everything below and the guarded Lease fields
	leases  map[LeaseID]*Lease
	holders map[string]LeaseID // item key -> holding lease
	rd      RangeDeleter
	primary bool
	epoch   uint64 // advanced by Promote, Demote and Recover
	extend  int64  // ns, of the current primary term
	promAt  int64  // ns, when the current primary term began
	expHeap leaseHeap
	cpHeap  leaseHeap
	expBkt  bucket
	cpBkt   bucket
}

// NewLessor returns a lessor that is not primary. Call Stop when done.
func NewLessor(cfg Config) (Lessor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newLessor(cfg), nil
}

func newLessor(cfg Config) *lessor {
	cfg = cfg.withDefaults()
	le := &lessor{
		cfg:       cfg,
		base:      cfg.Clock.Now(),
		expiredC:  make(chan []*Lease, 16),
		cpC:       make(chan []Checkpoint, 16),
		kickC:     make(chan struct{}, 1),
		stopC:     make(chan struct{}),
		sweepSize: 1024,
		leases:    make(map[LeaseID]*Lease),
		holders:   make(map[string]LeaseID),
	}
	le.expHeap = leaseHeap{key: func(l *Lease) int64 { return l.offerAt }, idx: func(l *Lease) *int32 { return &l.expIdx }}
	le.cpHeap = leaseHeap{key: func(l *Lease) int64 { return l.cpDue }, idx: func(l *Lease) *int32 { return &l.cpIdx }}
	le.wg.Add(1)
	go le.run()
	return le
}

// now is the lessor's monotonic time in nanoseconds.
func (le *lessor) now() int64 { return int64(le.cfg.Clock.Now().Sub(le.base)) }

// lock takes the write lock for a renewal or a replicated change, and
// rlock the read lock for a lookup: work a client waits for, which long
// holders of the lock yield to.
func (le *lessor) lock() {
	le.waiting.Add(1)
	le.mu.Lock()
	le.waiting.Add(-1)
}

func (le *lessor) rlock() {
	le.waiting.Add(1)
	le.mu.RLock()
	le.waiting.Add(-1)
}

// yieldEvery is how many leases a long holder of the lock handles between
// looks at waiting: a few dozen microseconds of work at most.
const yieldEvery = 64

// yieldLocked lets waiting callers of lock and rlock take the lock, and
// reports whether the primary term is still epoch afterwards. A long holder
// calls it every yieldEvery leases. On a busy machine, a renewal that waited
// for a whole batch of a thousand checkpoints waited long: the holder,
// descheduled mid-batch, kept the lock (measured:
// bench/results/design-measurements.md, "lessor: lock yields").
func (le *lessor) yieldLocked(epoch uint64) bool {
	if le.waiting.Load() == 0 {
		return true
	}
	return le.pauseLocked(epoch)
}

func (le *lessor) kick() {
	select {
	case le.kickC <- struct{}{}:
	default:
	}
}

func (le *lessor) SetRangeDeleter(rd RangeDeleter) {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.rd = rd
}

// Grant is a replicated change: it takes ttl as logged, refusing only what
// is outside 1..TTLCeiling, and never consults Config.MinTTL or MaxTTL (the
// leader applied its own before proposing).
func (le *lessor) Grant(id LeaseID, ttl int64) (*Lease, error) {
	return le.GrantOwned(id, ttl, "")
}

// GrantOwned is Grant with an owner, recorded as logged.
func (le *lessor) GrantOwned(id LeaseID, ttl int64, owner string) (*Lease, error) {
	if id <= NoLease {
		return nil, ErrInvalidID
	}
	if err := checkTTL(ttl); err != nil {
		return nil, err
	}
	le.lock()
	defer le.mu.Unlock()
	if le.leases[id] != nil {
		return nil, ErrLeaseExists
	}
	l := &Lease{ID: id, ttl: ttl, owner: owner, le: le, expIdx: -1, cpIdx: -1}
	le.leases[id] = l
	if le.primary {
		le.renewLocked(l, le.now())
	}
	return l, nil
}

func (le *lessor) Revoke(id LeaseID) error {
	le.lock()
	defer le.mu.Unlock()
	l := le.leases[id]
	if l == nil {
		return ErrLeaseNotFound
	}
	le.unscheduleLocked(l)
	l.revoked = true
	delete(le.leases, id)
	keys := sortedKeys(l.items)
	for _, k := range keys {
		delete(le.holders, k)
	}
	l.items = nil
	if le.rd != nil && len(keys) > 0 {
		txn := le.rd()
		for _, k := range keys {
			txn.DeleteRange([]byte(k), nil)
		}
		txn.End()
	}
	return nil
}

func (le *lessor) Attach(id LeaseID, items []LeaseItem) error {
	le.lock()
	defer le.mu.Unlock()
	l := le.leases[id]
	if l == nil {
		return ErrLeaseNotFound
	}
	for _, it := range items {
		if it.Key == "" {
			return ErrInvalidItem
		}
		if h := le.holders[it.Key]; h != NoLease && h != id {
			return fmt.Errorf("%w: %q is held by lease %d", ErrItemHeld, it.Key, h)
		}
	}
	if l.items == nil && len(items) > 0 {
		l.items = make(map[string]struct{}, len(items))
	}
	for _, it := range items {
		l.items[it.Key] = struct{}{}
		le.holders[it.Key] = id
	}
	return nil
}

func (le *lessor) GetLease(item LeaseItem) LeaseID {
	le.rlock()
	defer le.mu.RUnlock()
	return le.holders[item.Key]
}

func (le *lessor) Detach(id LeaseID, items []LeaseItem) error {
	le.lock()
	defer le.mu.Unlock()
	l := le.leases[id]
	if l == nil {
		return ErrLeaseNotFound
	}
	for _, it := range items {
		switch h := le.holders[it.Key]; h {
		case id:
		case NoLease:
			return fmt.Errorf("%w: %q", ErrItemNotFound, it.Key)
		default:
			return fmt.Errorf("%w: %q is held by lease %d", ErrItemHeld, it.Key, h)
		}
	}
	for _, it := range items {
		delete(l.items, it.Key)
		delete(le.holders, it.Key)
	}
	return nil
}

func (le *lessor) Lookup(id LeaseID) *Lease {
	le.rlock()
	defer le.mu.RUnlock()
	return le.leases[id]
}

func (le *lessor) Len() int {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return len(le.leases)
}

func (le *lessor) Leases() []*Lease {
	le.mu.RLock()
	ls := make([]*Lease, 0, len(le.leases))
	for _, l := range le.leases {
		ls = append(ls, l)
	}
	le.mu.RUnlock()
	slices.SortFunc(ls, func(a, b *Lease) int { return cmpID(a.ID, b.ID) })
	return ls
}

func cmpID(a, b LeaseID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (le *lessor) ExpiredLeasesC() <-chan []*Lease   { return le.expiredC }
func (le *lessor) CheckpointsC() <-chan []Checkpoint { return le.cpC }

func (le *lessor) Stop() {
	le.stopOnce.Do(func() { close(le.stopC) })
	le.wg.Wait()
}
