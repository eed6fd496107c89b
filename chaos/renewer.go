package chaos

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// renewLease renews lease id n times, one renewal every TTL/4, on a
// KeepAlive stream of the holder's own, and calls between() after each
// send. It records every renewal as an op whose invoke time is its send time
// (the client library's shared stream does not expose send times, and the
// no-early-expiry check needs them exact).
//
// Like a real keepalive client it does not wait for one answer before
// sending the next renewal: renewals sent to a paused leader pile up and are
// all answered when it resumes, which is when a server that acknowledges
// without confirming its leadership gives itself away. It reports whether
// the lease was still alive (no NOT_FOUND answer).
func (w *workload) renewLease(ctx context.Context, p int, id int64, n int, between func()) bool {
	rs := &renewStream{w: w, p: p, id: id}
	defer rs.close()
	for range n {
		if !sleep(ctx, w.cfg.TTL/4) || rs.gone() {
			break
		}
		rs.send(ctx)
		between()
	}
	// Give the last renewals time to be answered; a paused leader may take
	// a while.
	rs.drain(ctx, 2*w.cfg.TTL)
	return !rs.gone()
}

// renewStream is one holder's KeepAlive stream and its renewals in flight.
type renewStream struct {
	w  *workload
	p  int
	id int64

	mu       sync.Mutex // guards everything below
	stream   leasepb.Leases_KeepAliveClient
	cancel   context.CancelFunc
	idx      int     // node the stream is open to
	pending  []int64 // invoke times of renewals sent and not yet answered, in order
	notFound bool
	done     chan struct{} // closed when the receiver of the current stream exits
}

func (rs *renewStream) gone() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.notFound
}

// send sends one renewal, opening a stream to the presumed leader first if
// there is none.
func (rs *renewStream) send(ctx context.Context) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.stream == nil {
		rs.w.mu.Lock()
		idx := rs.w.leader
		rs.w.mu.Unlock()
		sctx, cancel := context.WithCancel(ctx)
		st, err := leasepb.NewLeasesClient(rs.w.conns[idx]).KeepAlive(sctx)
		if err != nil {
			cancel()
			rs.w.h.Add(Op{Process: rs.p, Kind: OpRenew, Lease: rs.id, Status: StatusFail, Err: errText(err), Invoke: rs.w.h.Now(), Complete: rs.w.h.Now()})
			rs.w.nextLeader(idx, -1)
			return
		}
		rs.stream, rs.cancel, rs.idx, rs.done = st, cancel, idx, make(chan struct{})
		go rs.receive(st, rs.done)
	}
	inv := rs.w.h.Now()
	if err := rs.stream.Send(&leasepb.KeepAliveRequest{Id: rs.id}); err != nil {
		// The stream is broken; its receiver records what was in flight.
		rs.w.h.Add(Op{Process: rs.p, Kind: OpRenew, Lease: rs.id, Status: StatusFail, Err: errText(err), Invoke: inv, Complete: rs.w.h.Now()})
		return
	}
	rs.pending = append(rs.pending, inv)
}

// receive records the answers of one stream in order; when the stream
// breaks, renewals still in flight have an unknown outcome.
func (rs *renewStream) receive(st leasepb.Leases_KeepAliveClient, done chan struct{}) {
	defer close(done)
	for {
		resp, err := st.Recv()
		rs.mu.Lock()
		if err != nil {
			hint := -1
			s, _ := status.FromError(err)
			for _, d := range s.Details() {
				if lh, ok := d.(*leasepb.LeaderHint); ok {
					hint = rs.w.indexOf(lh.GetAddress())
				}
			}
			for _, inv := range rs.pending {
				rs.w.h.Add(Op{Process: rs.p, Kind: OpRenew, Lease: rs.id, Status: StatusInfo, Err: errText(err), Invoke: inv, Complete: rs.w.h.Now()})
			}
			rs.pending = nil
			if rs.stream == st {
				rs.cancel()
				rs.stream = nil
				rs.w.nextLeader(rs.idx, hint)
			}
			rs.mu.Unlock()
			return
		}
		if len(rs.pending) > 0 {
			inv := rs.pending[0]
			rs.pending = rs.pending[1:]
			op := Op{Process: rs.p, Kind: OpRenew, Lease: rs.id, Status: StatusOK, Invoke: inv, Complete: rs.w.h.Now()}
			switch {
			case resp.GetError() == "NOT_FOUND":
				rs.notFound = true
			case resp.GetError() != "" || resp.GetTtlMs() <= 0:
				op.Status, op.Err = StatusInfo, resp.GetError()
			default:
				op.Found, op.TTLms = true, resp.GetTtlMs()
			}
			rs.w.h.Add(op)
		}
		rs.mu.Unlock()
	}
}

// drain waits up to d for the renewals in flight to be answered.
func (rs *renewStream) drain(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		rs.mu.Lock()
		n := len(rs.pending)
		rs.mu.Unlock()
		if n == 0 || !sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}

// close ends the stream; renewals still in flight are recorded as unknown
// by the receiver.
func (rs *renewStream) close() {
	rs.mu.Lock()
	cancel, done := rs.cancel, rs.done
	if rs.stream != nil {
		rs.stream.CloseSend()
	}
	rs.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// indexOf maps a gRPC address to its connection, or -1.
func (w *workload) indexOf(addr string) int {
	for i, c := range w.conns {
		if c.Target() == addr {
			return i
		}
	}
	return -1
}

// nextLeader moves the shared guess of the leader away from failed, to
// hint if one is known.
func (w *workload) nextLeader(failed, hint int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.leader != failed {
		return
	}
	if hint >= 0 && hint != failed {
		w.leader = hint
	} else {
		w.leader = (failed + 1) % len(w.conns)
	}
}

// ProcessKeepAlive is the process of the renewals the client library's
// KeepAlive manager sends for lock leases (see renewalRecorder).
const ProcessKeepAlive = 2000

// renewalRecorder records every renewal the client library sends (lock
// leases, kept alive by client.KeepAlive) as a renew op, from the client's
// renewal observer: its invoke time is the send time the client's deadline
// counts from, so lock leases have exact claims. Refusals and renewals
// given up are recorded as unknown.
func renewalRecorder(h *History) func(client.RenewalEvent) {
	return func(ev client.RenewalEvent) {
		op := Op{Process: ProcessKeepAlive, Kind: OpRenew, Lease: ev.LeaseID, Status: StatusInfo, Err: ev.Err,
			Invoke: h.At(ev.Sent), Complete: h.At(ev.Acked)}
		switch ev.Outcome {
		case client.RenewalAcked:
			op.Status, op.Found, op.TTLms = StatusOK, true, ev.TTL.Milliseconds()
		case client.RenewalNotFound:
			op.Status = StatusOK
		case client.RenewalUnknown:
			op.Err = "given up: no answer will be read"
		}
		h.Add(op)
	}
}
