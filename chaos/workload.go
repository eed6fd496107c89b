package chaos

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
)

// WorkloadConfig sizes the workload.
type WorkloadConfig struct {
	TTL     time.Duration // requested lease TTL
	Holders int           // lease holders: grant, renew, then revoke or abandon
	Lockers int           // lock acquirers using the client's lock helper
	Readers int           // TimeToLive and item Get
	Keys    []string      // the contended lock keys
	Seed    int64
}

// fencedResource is the resource guarded by the locks: it accepts a write
// only with a fencing token at least as high as any it has seen.
type fencedResource struct {
	mu  sync.Mutex // guards max
	max map[string]uint64
}

func (f *fencedResource) write(key string, token uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.max[key] {
		return false
	}
	f.max[key] = token
	return true
}

// workload runs the workers and records their operations.
type workload struct {
	cfg    WorkloadConfig
	h      *History
	cl     *client.Client // grants, reads, revokes, lock acquisition
	conns  []*grpc.ClientConn
	fenced *fencedResource
	logf   func(format string, args ...any)

	mu        sync.Mutex // guards leader, known and abandoned
	leader    int        // index into conns of the node renewals go to first
	known     []int64    // recently granted leases, for readers
	abandoned []int64    // leases left to expire, for the revoker

	pollers sync.WaitGroup // goroutines watching abandoned leases expire
	pause   pauseGate      // client pauses between a lock holder's deadline check and write (locker.go)
}

func newWorkload(cfg WorkloadConfig, h *History, cl *client.Client, conns []*grpc.ClientConn, logf func(string, ...any)) *workload {
	return &workload{cfg: cfg, h: h, cl: cl, conns: conns, fenced: &fencedResource{max: map[string]uint64{}}, logf: logf}
}

// run starts every worker and returns when ctx ends and they have stopped.
// Watchers of abandoned leases keep going (until pollCtx ends or the
// lease is seen gone); wait for them with w.pollers.Wait.
func (w *workload) run(ctx, pollCtx context.Context) {
	var wg sync.WaitGroup
	p := 0
	start := func(f func(ctx, pollCtx context.Context, p int, rng *rand.Rand)) {
		rng := rand.New(rand.NewPCG(uint64(w.cfg.Seed), uint64(p)))
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			f(ctx, pollCtx, p, rng)
		}(p)
		p++
	}
	for range w.cfg.Holders {
		start(w.holder)
	}
	for range w.cfg.Lockers {
		start(w.locker)
	}
	for range w.cfg.Readers {
		start(w.reader)
	}
	start(w.revoker)
	wg.Wait()
}

// sleep waits d unless ctx ends first; it reports whether to go on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// outcome classifies a mutation's error: definite failures leave no trace
// on the server; anything else may or may not have been applied.
func outcome(err error) string {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, client.ErrLeaseNotFound), errors.Is(err, client.ErrItemHeld),
		errors.Is(err, client.ErrInvalidArgument), errors.Is(err, client.ErrLeaseExists),
		errors.Is(err, client.ErrItemNotFound):
		return StatusFail
	}
	return StatusInfo
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}

func (w *workload) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 3*time.Second)
}

func (w *workload) grant(ctx context.Context, p int) (int64, bool) {
	octx, cancel := w.opCtx(ctx)
	defer cancel()
	inv := w.h.Now()
	l, err := w.cl.Grant(octx, w.cfg.TTL)
	op := Op{Process: p, Kind: OpGrant, Status: outcome(err), ReqTTLms: w.cfg.TTL.Milliseconds(), Err: errText(err), Invoke: inv, Complete: w.h.Now()}
	if err != nil {
		if op.Status == StatusFail {
			w.h.Add(op)
		}
		// A grant of unknown outcome has no known ID to check it by; the
		// lease, if it exists, expires unobserved.
		return 0, false
	}
	op.Lease, op.TTLms = l.ID, l.TTL.Milliseconds()
	w.h.Add(op)
	w.mu.Lock()
	w.known = append(w.known, l.ID)
	if len(w.known) > 64 {
		w.known = w.known[len(w.known)-64:]
	}
	w.mu.Unlock()
	return l.ID, true
}

func (w *workload) revoke(ctx context.Context, p int, id int64) {
	octx, cancel := w.opCtx(ctx)
	defer cancel()
	inv := w.h.Now()
	err := w.cl.Revoke(octx, id)
	op := Op{Process: p, Kind: OpRevoke, Lease: id, Status: outcome(err), Found: err == nil, Err: errText(err), Invoke: inv, Complete: w.h.Now()}
	if errors.Is(err, client.ErrLeaseNotFound) {
		op.Status = StatusOK // a definite answer: the lease was already gone
	}
	w.h.Add(op)
}

func (w *workload) timeToLive(ctx context.Context, p int, id int64) (found bool, ok bool) {
	octx, cancel := w.opCtx(ctx)
	defer cancel()
	inv := w.h.Now()
	info, err := w.cl.TimeToLive(octx, id, false)
	op := Op{Process: p, Kind: OpTTL, Lease: id, Status: StatusOK, Invoke: inv, Complete: w.h.Now()}
	switch {
	case err == nil:
		op.Found, op.TTLms, op.RemainingMs = true, info.GrantedTTL.Milliseconds(), info.Remaining.Milliseconds()
	case errors.Is(err, client.ErrLeaseNotFound):
	default:
		op.Status, op.Err = StatusFail, errText(err)
	}
	w.h.Add(op)
	return op.Found, op.Status == StatusOK
}

// holder grants a lease, renews it a few times every TTL/4 (see renewer),
// then revokes it or abandons it to expire (watched by a poller, and
// perhaps revoked by the revoker first).
func (w *workload) holder(ctx, pollCtx context.Context, p int, rng *rand.Rand) {
	for ctx.Err() == nil {
		id, ok := w.grant(ctx, p)
		if !ok {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		// Reads run beside the renewals: a slow read must not delay the
		// next renewal, or the lease would go unrenewed for over TTL/2 and
		// be checkpointed, and every later renewal would need a Raft write.
		var reads sync.WaitGroup
		alive := w.renewLease(ctx, p, id, 2+rng.IntN(6), func() {
			if rng.IntN(3) == 0 {
				reads.Go(func() { w.timeToLive(ctx, p, id) })
			}
		})
		reads.Wait()
		switch {
		case !alive:
		case rng.IntN(5) < 2 || ctx.Err() != nil:
			w.revoke(pollCtx, p, id)
		default:
			// Only some abandoned leases are offered to the revoker: the
			// others must expire on their own, so that expiry gets checked.
			w.abandon(pollCtx, p, id, rng.IntN(4) == 0)
		}
	}
}

// abandon stops renewing id and watches it until it is seen gone.
func (w *workload) abandon(pollCtx context.Context, p int, id int64, revocable bool) {
	if revocable {
		w.mu.Lock()
		w.abandoned = append(w.abandoned, id)
		w.mu.Unlock()
	}
	w.pollers.Add(1)
	go func() {
		defer w.pollers.Done()
		limit := time.Now().Add(4*w.cfg.TTL + 20*time.Second)
		for time.Now().Before(limit) && sleep(pollCtx, 100*time.Millisecond) {
			if found, ok := w.timeToLive(pollCtx, 1000+p, id); ok && !found {
				return
			}
		}
	}()
}

// revoker revokes abandoned leases now and then, racing their expiry.
func (w *workload) revoker(ctx, pollCtx context.Context, p int, rng *rand.Rand) {
	for sleep(ctx, time.Duration(500+rng.IntN(2000))*time.Millisecond) {
		w.mu.Lock()
		var id int64
		if n := len(w.abandoned); n > 0 {
			i := rng.IntN(n)
			id = w.abandoned[i]
			w.abandoned = append(w.abandoned[:i], w.abandoned[i+1:]...)
		}
		w.mu.Unlock()
		if id != 0 {
			w.revoke(ctx, p, id)
		}
	}
}

// reader reads leases and lock keys.
func (w *workload) reader(ctx, _ context.Context, p int, rng *rand.Rand) {
	for sleep(ctx, time.Duration(50+rng.IntN(150))*time.Millisecond) {
		w.mu.Lock()
		var id int64
		if n := len(w.known); n > 0 && rng.IntN(2) == 0 {
			id = w.known[rng.IntN(n)]
		}
		w.mu.Unlock()
		if id != 0 {
			w.timeToLive(ctx, p, id)
			continue
		}
		key := w.cfg.Keys[rng.IntN(len(w.cfg.Keys))]
		octx, cancel := w.opCtx(ctx)
		inv := w.h.Now()
		it, err := w.cl.Get(octx, key)
		cancel()
		op := Op{Process: p, Kind: OpGet, Key: key, Status: StatusOK, Invoke: inv, Complete: w.h.Now()}
		switch {
		case err == nil:
			op.Found, op.Holder, op.Rev = true, it.LeaseID, it.Revision
		case errors.Is(err, client.ErrItemNotFound):
		default:
			op.Status, op.Err = StatusFail, errText(err)
		}
		w.h.Add(op)
	}
}

// finalRead records the final read (ProcessFinal): one listing of every
// lease, as a TimeToLive answer for each lease in granted and each lease
// listed, and a Get of every key. It retries a failed read for up to
// 15 s; one that never succeeds is recorded as failed.
func (w *workload) finalRead(ctx context.Context, granted []int64) {
	retry := func(f func(context.Context) error) (inv, done int64, err error) {
		limit := time.Now().Add(15 * time.Second)
		for {
			octx, cancel := w.opCtx(ctx)
			inv = w.h.Now()
			err = f(octx)
			done = w.h.Now()
			cancel()
			if err == nil || time.Now().After(limit) || !sleep(ctx, 200*time.Millisecond) {
				return inv, done, err
			}
		}
	}
	var listed []client.LeaseInfo
	inv, done, err := retry(func(ctx context.Context) (err error) {
		listed, err = w.cl.Leases(ctx)
		return err
	})
	if err != nil {
		w.h.Add(Op{Process: ProcessFinal, Kind: OpTTL, Status: StatusFail, Err: errText(err), Invoke: inv, Complete: done})
	} else {
		alive := map[int64]client.LeaseInfo{}
		for _, l := range listed {
			alive[l.ID] = l
		}
		seen := map[int64]bool{}
		for _, id := range append(append([]int64(nil), granted...), slices.Collect(maps.Keys(alive))...) {
			if seen[id] {
				continue
			}
			seen[id] = true
			op := Op{Process: ProcessFinal, Kind: OpTTL, Lease: id, Status: StatusOK, Invoke: inv, Complete: done}
			if l, ok := alive[id]; ok {
				op.Found, op.TTLms, op.RemainingMs = true, l.GrantedTTL.Milliseconds(), l.Remaining.Milliseconds()
			}
			w.h.Add(op)
		}
	}
	for _, key := range w.cfg.Keys {
		var it client.Item
		inv, done, err := retry(func(ctx context.Context) (err error) {
			it, err = w.cl.Get(ctx, key)
			if errors.Is(err, client.ErrItemNotFound) {
				return nil
			}
			return err
		})
		op := Op{Process: ProcessFinal, Kind: OpGet, Key: key, Status: StatusOK, Invoke: inv, Complete: done}
		switch {
		case err != nil:
			op.Status, op.Err = StatusFail, errText(err)
		case it.LeaseID != 0:
			op.Found, op.Holder, op.Rev = true, it.LeaseID, it.Revision
		}
		w.h.Add(op)
	}
}
