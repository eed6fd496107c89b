package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

// snapshotChunkSize is the most snapshot data one stream message carries:
// well under grpc's default 4 MiB receive limit, large enough that per
// message overhead does not matter.
const snapshotChunkSize = 1 << 20

var (
	// ErrBadSnapshotStream is returned (as InvalidArgument) to a sender whose
	// InstallSnapshot stream does not start with the request header, or
	// repeats it.
	ErrBadSnapshotStream = errors.New("transport: InstallSnapshot stream must start with one request header")
	// ErrSnapshotTooLong is what raft reads when a sender streams more data
	// than the size its header declared.
	ErrSnapshotTooLong = errors.New("transport: snapshot data longer than its declared size")
	// ErrSnapshotAborted is what raft reads when the InstallSnapshot call
	// ended (cancelled, timed out, transport closed) before all data came.
	ErrSnapshotAborted = errors.New("transport: snapshot stream aborted")
)

// InstallSnapshot implements raft.Transport. The header goes first, then
// data in chunks of up to 1 MiB; the answer comes after raft on the other
// side has consumed the stream.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	t.terms.observe(args.Term)
	ctx, cancel := context.WithTimeout(t.ctx, snapshotTimeout(t.timeout, args.Size))
	defer cancel()
	out, err := sendSnapshot(ctx, c, args, data)
	if err == nil {
		err = t.decodeInstallSnapshotResponse(out, resp)
	}
	if err != nil {
		return t.callErr("InstallSnapshot", target, err)
	}
	return nil
}

func sendSnapshot(ctx context.Context, c leasepb.RaftTransportClient, args *raft.InstallSnapshotRequest, data io.Reader) (*leasepb.RaftInstallSnapshotResponse, error) {
	stream, err := c.InstallSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	header := &leasepb.RaftInstallSnapshotChunk{
		Chunk: &leasepb.RaftInstallSnapshotChunk_Request{Request: installSnapshotRequestToProto(args)},
	}
	// Send returns io.EOF when the server has already ended the call; its
	// real status then comes from CloseAndRecv.
	if err := stream.Send(header); err != nil && err != io.EOF {
		return nil, err
	} else if err == nil {
		bufSize := int64(snapshotChunkSize)
		if args.Size > 0 && args.Size < bufSize {
			bufSize = args.Size
		}
		// One buffer serves every chunk: Send has marshalled the message by
		// the time it returns.
		buf := make([]byte, bufSize)
		for {
			n, rerr := io.ReadFull(data, buf)
			if n > 0 {
				msg := &leasepb.RaftInstallSnapshotChunk{Chunk: &leasepb.RaftInstallSnapshotChunk_Data{Data: buf[:n]}}
				if err := stream.Send(msg); err == io.EOF {
					break
				} else if err != nil {
					return nil, err
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				// Returning cancels ctx, which aborts the call on the receiver.
				return nil, fmt.Errorf("reading snapshot: %w", rerr)
			}
		}
	}
	return stream.CloseAndRecv()
}

// InstallSnapshot receives a snapshot. Every Recv stays on this handler's
// goroutine: the chunks are passed to raft's reader over a channel, so raft
// never touches the stream, which must not be used once the handler returns.
func (s *server) InstallSnapshot(stream leasepb.RaftTransport_InstallSnapshotServer) error {
	t := s.t
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	header := first.GetRequest()
	if header == nil {
		return status.Error(codes.InvalidArgument, ErrBadSnapshotStream.Error())
	}
	req, err := t.decodeInstallSnapshotRequest(header)
	if err != nil {
		return t.refuse("InstallSnapshot", err)
	}
	rd := newSnapshotReader(req.Size)
	defer rd.abort()

	respCh := make(chan raft.RPCResponse, 1)
	if err := t.deliver(ctx, raft.RPC{Command: req, Reader: rd, RespChan: respCh}); err != nil {
		return toStatus(err)
	}
	for done := false; !done; {
		var c chunk
		msg, err := stream.Recv()
		switch {
		case err != nil:
			c.err, done = err, true
		case msg.GetRequest() != nil:
			c.err, done = ErrBadSnapshotStream, true
		default:
			c.data = msg.GetData()
		}
		select {
		case rd.ch <- c:
		case r := <-respCh:
			// raft answered before reading everything: it rejected the
			// snapshot. The rest of the stream is of no use.
			return t.snapshotReply(stream, r.Response, r.Error)
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-t.ctx.Done():
			return toStatus(errClosed)
		}
	}
	resp, err := t.await(ctx, respCh)
	return t.snapshotReply(stream, resp, err)
}

func (t *Transport) snapshotReply(stream leasepb.RaftTransport_InstallSnapshotServer, resp any, err error) error {
	if err != nil {
		return toStatus(err)
	}
	r, ok := resp.(*raft.InstallSnapshotResponse)
	if !ok {
		return status.Error(codes.Internal, fmt.Sprintf("%v: %T", errUnexpectedResponse, resp))
	}
	t.terms.observe(r.Term)
	return stream.SendAndClose(installSnapshotResponseToProto(r))
}

// chunk is one step of a snapshot stream: data, or the error (io.EOF at
// the normal end) that ends it.
type chunk struct {
	data []byte
	err  error
}

// snapshotReader is the io.Reader raft consumes an incoming snapshot from.
// Read is called by raft's goroutine only; ch and done are its only links
// to the handler.
type snapshotReader struct {
	ch   chan chunk
	done chan struct{} // closed when the handler returns

	size int64  // declared size
	read int64  // bytes returned so far
	buf  []byte // rest of the current chunk
	err  error  // sticky: once set, every Read returns it
}

func newSnapshotReader(size int64) *snapshotReader {
	return &snapshotReader{ch: make(chan chunk), done: make(chan struct{}), size: size}
}

// abort makes reads that the handler can no longer serve fail instead of
// blocking forever.
func (r *snapshotReader) abort() { close(r.done) }

func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		select {
		case c := <-r.ch:
			r.buf = c.data
			switch {
			case c.err == io.EOF:
				r.err = io.EOF
			case c.err != nil:
				r.err = fmt.Errorf("%w: %w", ErrSnapshotAborted, c.err)
			}
		case <-r.done:
			r.err = ErrSnapshotAborted
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.read += int64(n)
	if r.read > r.size {
		r.buf, r.err = nil, ErrSnapshotTooLong
		return 0, r.err
	}
	return n, nil
}
