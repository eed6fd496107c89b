package lessor

import (
	"runtime"
	"time"
	"unsafe"
)

// Promote's sweep. A million leases take a sweep of a few hundred
// milliseconds of CPU on a primary that is also serving the renewals of a
// failover; none of it may hold those up (rule 5).

// scheduleAllLocked gives every lease its first expiry of the primary term
// epoch: at once if there are few, else in a sweep of its own.
func (le *lessor) scheduleAllLocked(epoch uint64) {
	n := len(le.leases)
	if n <= le.sweepSize {
		sp, now := le.newSpreader(), le.now()
		for _, l := range le.leases {
			le.promoteLeaseLocked(l, sp, now)
		}
		return
	}
	le.wg.Add(1)
	go func() {
		defer le.wg.Done()
		le.sweep(epoch, n)
		// The run loop may have gone to sleep (up to maxWait) on the
		// half-swept heaps: wake it for what the sweep scheduled.
		le.kick()
	}()
}

func (le *lessor) newSpreader() *spreader { return newSpreader(le.cfg.RevokeRate, le.cfg.BatchSize) }

// sweep schedules every lease not yet scheduled in epoch (about sizeHint of
// them), and gives up when the epoch moves on. A lease granted or renewed
// meanwhile is already scheduled; a revoked one is skipped.
//
// It collects the leases, puts them in the order of their addresses in
// memory, and schedules them in that order. In the map's order each lease
// was a cache miss at a random address; in address order, leases allocated
// one after another are read one after another. All along it lets the lock
// go and yields the processor every few dozen leases: on two cores, with
// the garbage collector marking a large heap on one, a sweep that ran a
// millisecond between yields kept the renewals waiting for the lock or a
// processor (measured: bench/results/design-measurements.md, "lessor:
// promote sweep").
func (le *lessor) sweep(epoch uint64, sizeHint int) {
	// The heaps' arrays are allocated at their full size here, with no
	// lock held, and adopted below: grown by append under the lock, each
	// doubling of a million-entry heap allocated megabytes there, and an
	// allocation that large during a GC cycle makes its goroutine do as much
	// marking work first, which stalled renewals. Promote's caller holds the
	// server's term lock, so not there either: a large allocation there
	// started a GC cycle and held new KeepAlive streams up for its mark
	// assist (figures: bench/results/design-measurements.md).
	le.atStage(sweepStarting)
	size := sizeHint + sizeHint/8
	exp, cp := make([]heapItem, 0, size), make([]heapItem, 0, size)
	ls := make([]*Lease, 0, size)
	le.mu.Lock()
	if le.epoch != epoch {
		le.mu.Unlock()
		return
	}
	// Entries keep their positions: the leases' stored indexes stay right.
	le.expHeap.items = append(exp, le.expHeap.items...)
	le.cpHeap.items = append(cp, le.cpHeap.items...)
	// Ranging over the map across lock releases is safe: it is only changed
	// under the lock, and a lease added meanwhile is already scheduled.
	n := 0
	for _, l := range le.leases {
		ls = append(ls, l)
		if n++; n%collectChunk == 0 && !le.pauseLocked(epoch) {
			le.mu.Unlock()
			return
		}
	}
	le.mu.Unlock()
	le.atStage(sweepCollected)
	ls = byAddress(ls)
	sp := le.newSpreader()
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.epoch != epoch {
		return
	}
	now := le.now()
	chunk := min(le.sweepSize, yieldEvery)
	for i, l := range ls {
		if l.epoch != epoch && !l.revoked {
			le.promoteLeaseLocked(l, sp, now)
		}
		if (i+1)%chunk == 0 {
			if !le.pauseLocked(epoch) {
				return
			}
			now = le.now()
		}
	}
}

// sweepStage names the points of a sweep where tests can step in.
type sweepStage int

const (
	sweepStarting  sweepStage = iota // before it allocates
	sweepCollected                   // between collecting the leases and scheduling them
)

func (le *lessor) atStage(s sweepStage) {
	if le.sweepHook != nil {
		le.sweepHook(s)
	}
}

// collectChunk is how many leases the sweep collects per hold of the lock.
const collectChunk = 1024

// pauseLocked lets the lock go, yields the processor, takes the lock again
// and reports whether the primary term is still epoch.
func (le *lessor) pauseLocked(epoch uint64) bool {
	hook := le.yieldHook
	le.mu.Unlock()
	if hook != nil {
		hook()
	}
	runtime.Gosched()
	le.mu.Lock()
	return le.epoch == epoch
}

// byAddress returns ls in ascending order of address, to 64 KiB: a counting
// sort, linear and with yields, where a comparison sort of a million
// pointers ran long without a yield (measured:
// bench/results/design-measurements.md). The garbage collector never
// moves objects, so an address is stable.
func byAddress(ls []*Lease) []*Lease {
	if len(ls) < 2 {
		return ls
	}
	addr := func(l *Lease) uintptr { return uintptr(unsafe.Pointer(l)) }
	lo, hi := addr(ls[0]), addr(ls[0])
	for i, l := range ls {
		lo, hi = min(lo, addr(l)), max(hi, addr(l))
		yieldAt(i)
	}
	shift := uint(16)
	for (hi-lo)>>shift > uintptr(4*len(ls)) {
		shift++ // a sparse heap: coarser regions, a bounded count array
	}
	starts := make([]int, (hi-lo)>>shift+2)
	for i, l := range ls {
		starts[(addr(l)-lo)>>shift+1]++
		yieldAt(i)
	}
	for i := 1; i < len(starts); i++ {
		starts[i] += starts[i-1]
	}
	out := make([]*Lease, len(ls))
	for i, l := range ls {
		r := (addr(l) - lo) >> shift
		out[starts[r]] = l
		starts[r]++
		yieldAt(i)
	}
	return out
}

// yieldAt yields the processor every 64Ki iterations of a long loop.
func yieldAt(i int) {
	if i&(1<<16-1) == 1<<16-1 {
		runtime.Gosched()
	}
}

// promoteLeaseLocked gives l its first expiry of this primary term; now is
// a recent reading of the lessor's clock.
func (le *lessor) promoteLeaseLocked(l *Lease, sp *spreader, now int64) {
	l.epoch, l.expIdx, l.cpIdx, l.expired = le.epoch, -1, -1, false
	if l.remaining > 0 {
		l.deadline = l.cpAt + l.remaining*int64(time.Millisecond)
	} else {
		l.deadline = le.promAt + l.ttl*int64(time.Millisecond)
		// Checkpoint it once, so that the next primary does not start its
		// TTL over again (rule 3). The checkpoint bucket paces these.
		l.cpDue = le.promAt
		le.cpHeap.push(l)
	}
	l.expiry = sp.place(l.deadline+le.extend, now)
	l.offerAt = l.expiry
	le.expHeap.push(l)
}
