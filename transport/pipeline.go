package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/leasepb"
)

// pipelineDepth bounds the requests sent but not yet answered, and the
// answered ones raft has not consumed yet (each has its own bound), as
// InmemTransport does. AppendEntries blocks beyond it: back-pressure.
const pipelineDepth = 16

var (
	// ErrPipelineClosed is returned by AppendEntries on a closed pipeline and
	// by the futures it failed when it closed. Errors that wrap it also wrap
	// raft.ErrPipelineShutdown.
	ErrPipelineClosed = errors.New("transport: pipeline closed")
	// ErrRemote wraps the error raft on the receiving side answered a
	// pipelined AppendEntries with.
	ErrRemote = errors.New("transport: remote raft error")

	errStreamEnded    = errors.New("transport: pipeline stream ended")
	errPipelineClosed = fmt.Errorf("%w: %w", ErrPipelineClosed, raft.ErrPipelineShutdown)
)

// AppendEntriesPipeline implements raft.Transport. The pipeline runs over
// a pipeline stream of its own when Config.DialStream is set and the peer
// serves it (stream.go), otherwise over a bidirectional gRPC stream.
// Responses come back in request order either way, so a single receiver
// goroutine pairs them with the futures in a FIFO.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	var w pipeWire
	if t.dialStream != nil {
		conn, err := t.openStream(string(target))
		switch {
		case err == nil:
			w = newStreamWire(conn, t.timeout)
		case errors.Is(err, ErrStreamRefused):
			t.logger.Debug("peer refuses the pipeline stream; pipelining over gRPC", "peer", target)
		default:
			return nil, t.callErr("AppendEntriesPipeline", target, err)
		}
	}
	if w == nil {
		gw, err := t.openGRPCWire(target)
		if err != nil {
			return nil, err
		}
		w = gw
	}
	p := &pipeline{
		t:        t,
		target:   target,
		wire:     w,
		inflight: make(chan *appendFuture, pipelineDepth),
		doneCh:   make(chan raft.AppendFuture, pipelineDepth),
		closeCh:  make(chan struct{}),
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		w.close()
		return nil, errClosed
	}
	t.pipelines[p] = struct{}{}
	t.mu.Unlock()

	p.wg.Add(1)
	go p.receive()
	return p, nil
}

// pipeWire is what a pipeline sends its requests over and reads the answers
// from, in order: a gRPC stream or a pipeline stream.
type pipeWire interface {
	// send sends one request; start is when raft handed it over (the
	// request's timeout counts from it).
	send(req *leasepb.RaftAppendEntriesRequest, start time.Time) error
	// recv reads the next answer, failing once deadline has passed.
	recv(deadline time.Time) (*leasepb.RaftAppendEntriesPipelineResponse, error)
	// close ends the wire; a send or recv in progress fails.
	close()
}

// grpcWire is a pipeline over a bidirectional gRPC stream.
type grpcWire struct {
	stream leasepb.RaftTransport_AppendEntriesPipelineClient
	cancel context.CancelFunc // ends the stream
}

func (t *Transport) openGRPCWire(target raft.ServerAddress) (*grpcWire, error) {
	c, err := t.client(target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(t.ctx)
	// Opening the stream waits for a connection; bound that wait like any
	// other RPC. The stream itself lives until the pipeline closes.
	openTimer := time.AfterFunc(t.timeout, cancel)
	stream, err := c.AppendEntriesPipeline(ctx)
	if !openTimer.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, t.callErr("AppendEntriesPipeline", target, err)
	}
	return &grpcWire{stream: stream, cancel: cancel}, nil
}

func (w *grpcWire) send(req *leasepb.RaftAppendEntriesRequest, _ time.Time) error {
	// Send says only io.EOF of a broken stream; the receiver reports the
	// cause to the futures already sent.
	if err := w.stream.Send(req); err != io.EOF {
		return err
	}
	return errStreamEnded
}

func (w *grpcWire) recv(deadline time.Time) (*leasepb.RaftAppendEntriesPipelineResponse, error) {
	timedOut := make(chan struct{})
	timer := time.AfterFunc(time.Until(deadline), func() {
		close(timedOut)
		w.cancel()
	})
	msg, err := w.stream.Recv()
	if !timer.Stop() {
		<-timedOut
		return nil, context.DeadlineExceeded
	}
	return msg, err
}

func (w *grpcWire) close() { w.cancel() }

// pipeline is a raft.AppendPipeline over a wire.
type pipeline struct {
	t      *Transport
	target raft.ServerAddress
	wire   pipeWire

	inflight chan *appendFuture     // sent, awaiting a response, in send order
	doneCh   chan raft.AppendFuture // answered, for raft
	closeCh  chan struct{}          // closed by Close
	wg       sync.WaitGroup         // the receive goroutine

	// sendMu serialises sends (a stream allows one sender at a time)
	// with the hand-off to inflight, and lets Close wait for a sender that
	// is mid-way, so that no future slips into inflight after Close drained it.
	sendMu sync.Mutex

	closeOnce sync.Once
}

// AppendEntries implements raft.AppendPipeline.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if resp == nil {
		resp = new(raft.AppendEntriesResponse)
	}
	start := time.Now()
	f := &appendFuture{start: start, sent: p.t.contactTime(start), args: args, resp: resp, done: make(chan struct{})}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	select {
	case <-p.closeCh:
		return nil, errPipelineClosed
	default:
	}
	p.t.terms.observe(args.Term)
	if err := p.wire.send(appendEntriesRequestToProto(args), start); err != nil {
		// The wire is broken; raft drops the pipeline.
		return nil, p.t.callErr("AppendEntriesPipeline", p.target, err)
	}
	select {
	case p.inflight <- f:
		return f, nil
	case <-p.closeCh:
		return nil, errPipelineClosed
	}
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.doneCh }

// Close implements raft.AppendPipeline. It ends the wire and fails every
// future that has no response yet.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		close(p.closeCh)
		p.wire.close()
		p.sendMu.Lock() // wait out a sender; later ones see closeCh
		p.sendMu.Unlock()
		p.wg.Wait()
		for drained := false; !drained; {
			select {
			case f := <-p.inflight:
				f.respond(errPipelineClosed)
			default:
				drained = true
			}
		}
		p.t.mu.Lock()
		delete(p.t.pipelines, p)
		p.t.mu.Unlock()
	})
	return nil
}

// receive pairs responses with futures in order and hands each future to
// raft. After the first wire error every later future fails with it: the
// wire cannot be trusted to stay in step any more.
func (p *pipeline) receive() {
	defer p.wg.Done()
	var broken error
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.closeCh:
			return
		}
		err := broken
		if err == nil {
			err = p.recv(f)
			if err != nil && !errors.Is(err, ErrRemote) {
				broken = err
				p.wire.close() // make the sender fail too
			}
		}
		f.respond(err)
		select {
		case p.doneCh <- f:
		case <-p.closeCh:
			return
		}
	}
}

// recv reads the response to f, within Timeout of f's send.
func (p *pipeline) recv(f *appendFuture) error {
	msg, err := p.wire.recv(f.start.Add(p.t.timeout))
	if err != nil {
		select {
		case <-p.closeCh:
			return errPipelineClosed
		default:
		}
		return p.t.callErr("AppendEntriesPipeline", p.target, err)
	}
	if msg.GetResponse() != nil {
		if err := p.t.decodeAppendEntriesResponse(msg.GetResponse(), f.resp); err != nil {
			// Refused like a stream failure: raft drops the pipeline.
			return p.t.callErr("AppendEntriesPipeline", p.target, err)
		}
	}
	if msg.GetError() != "" {
		return fmt.Errorf("%w: %s", ErrRemote, msg.GetError())
	}
	p.t.contacts.record(p.target, f.args, f.resp, f.sent)
	return nil
}

// appendFuture is a raft.AppendFuture.
type appendFuture struct {
	start time.Time // raft's Start, and the request's timeout
	sent  time.Time // on the contacts' clock (Config.Now)
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	done  chan struct{} // closed by respond
	err   error         // written before done closes
}

func (f *appendFuture) respond(err error) {
	f.err = err
	close(f.done)
}

// Error implements raft.Future.
func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

// Start implements raft.AppendFuture.
func (f *appendFuture) Start() time.Time { return f.start }

// Request implements raft.AppendFuture.
func (f *appendFuture) Request() *raft.AppendEntriesRequest { return f.args }

// Response implements raft.AppendFuture. raft reads it without checking
// Error first; on failure it is the zero response (Success false), which
// makes raft abandon the pipeline.
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
