package server

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// maxKeepAliveBatch bounds how many renewals share one confirmation.
const maxKeepAliveBatch = 256

// keepAliveBatch is a batch of renewals waiting for its confirmation.
type keepAliveBatch struct {
	round   *verifyRound
	results []RenewResult
	start   time.Time // when the batch was taken off the stream (renewal latency)
}

// serveStream renews leases as a KeepAlive stream's requests arrive, while
// term (the leadership term) lasts. Requests that queue up are renewed as one
// batch; each batch joins a confirmation that starts after its renewals
// (rule 2), and a sender goroutine answers a batch once its confirmation
// succeeds, so the next batch is renewed while the previous one is being
// confirmed. A batch that is confirmed at once (the renewal lease) with
// nothing queued before it is answered here, sparing a goroutine hand-off.
// The stream ends with UNAVAILABLE (and a hint) when leadership ends or a
// confirmation fails.
func (r *renewer) serveStream(stream leasepb.Leases_KeepAliveServer, term context.Context) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	reqs := make(chan lessor.LeaseID, 1024)
	recvErr := make(chan error, 1)
	go receiveKeepAlives(ctx, stream, reqs, recvErr)
	pending := make(chan keepAliveBatch, 8)
	// queued counts the batches renewed and not yet sent: the sender
	// takes one off after its last Send returns.
	var queued atomic.Int32
	sendErr := make(chan error, 1)
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		if err := r.sendConfirmed(ctx, stream, pending, &queued); err != nil {
			sendErr <- err
		}
	}()
	// Stop the sender before returning: a stream must not be written after
	// its handler returns.
	finish := func(err error) error {
		cancel()
		<-senderDone
		return err
	}
	for {
		select {
		case <-term.Done():
			return finish(toStatus(r.rs.notLeader()))
		case <-ctx.Done():
			return finish(ctx.Err())
		case err := <-sendErr:
			return finish(err)
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				// Answer what was renewed before the client closed its side.
				close(pending)
				<-senderDone
				select {
				case err := <-sendErr:
					return err
				default:
					return nil
				}
			}
			return finish(err)
		case id := <-reqs:
			start := time.Now()
			results, round, err := r.start(ctx, drainIDs(reqs, id), nil)
			if err != nil {
				return finish(toStatus(err))
			}
			if queued.Add(1) == 1 && round == confirmedRound {
				// Confirmed already and nothing is queued before it, so the
				// sender is idle: answer here.
				queued.Add(-1)
				if err := r.send(stream, results, start); err != nil {
					return finish(err)
				}
				continue
			}
			select {
			case pending <- keepAliveBatch{round: round, results: results, start: start}:
			case err := <-sendErr:
				return finish(err)
			case <-ctx.Done():
				return finish(ctx.Err())
			}
		}
	}
}

// receiveKeepAlives passes the stream's lease IDs to reqs until the stream
// or ctx ends; the stream's error goes to errc.
func receiveKeepAlives(ctx context.Context, stream leasepb.Leases_KeepAliveServer, reqs chan<- lessor.LeaseID, errc chan<- error) {
	var req leasepb.KeepAliveRequest // reused: only its ID is kept
	for {
		if err := stream.RecvMsg(&req); err != nil {
			errc <- err
			return
		}
		select {
		case reqs <- lessor.LeaseID(req.Id):
		case <-ctx.Done():
			return
		}
	}
}

// drainIDs returns first with every ID waiting in reqs, up to a batch.
func drainIDs(reqs <-chan lessor.LeaseID, first lessor.LeaseID) []lessor.LeaseID {
	// Sized for what is queued now, so that a batch is one allocation.
	ids := make([]lessor.LeaseID, 1, min(1+len(reqs), maxKeepAliveBatch))
	ids[0] = first
	for len(ids) < maxKeepAliveBatch {
		select {
		case id := <-reqs:
			ids = append(ids, id)
		default:
			return ids
		}
	}
	return ids
}

// sendConfirmed answers batches in order, each once its confirmation has
// succeeded, and takes each off queued once it is sent.
func (r *renewer) sendConfirmed(ctx context.Context, stream leasepb.Leases_KeepAliveServer, pending <-chan keepAliveBatch, queued *atomic.Int32) error {
	for {
		var b keepAliveBatch
		select {
		case b = <-pending:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.round == nil {
			return nil // pending was closed: everything renewed was answered
		}
		select {
		case <-b.round.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.round.err != nil {
			r.metrics.renewalsUnconfirmed(len(b.results))
			return toStatus(r.rs.err(b.round.err))
		}
		if err := r.send(stream, b.results, b.start); err != nil {
			return err
		}
		queued.Add(-1)
	}
}

// send answers a batch of confirmed renewals, taken off the stream at start.
func (r *renewer) send(stream leasepb.Leases_KeepAliveServer, results []RenewResult, start time.Time) error {
	for _, res := range results {
		resp := &leasepb.KeepAliveResponse{Id: int64(res.ID), TtlMs: res.TTL}
		if res.Err != nil {
			resp.TtlMs = 0
			code := status.Code(toStatus(res.Err))
			resp.Error = code.String()
			switch code {
			case codes.NotFound:
				resp.Error = "NOT_FOUND"
			case codes.PermissionDenied:
				resp.Error = "PERMISSION_DENIED"
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	r.metrics.renewalsAcked(results, start)
	return nil
}
