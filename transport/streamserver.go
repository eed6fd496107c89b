package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/leasepb"
)

// ServeStream serves one pipeline stream: conn is a connection to this
// node's port that opened with StreamPreface (not yet read), handed over by
// the node's listener once it has told it from gRPC and, with TLS, checked
// that a peer certificate opened it. It answers the requests one at a time,
// in order, until the peer ends the stream, a request is malformed, or the
// transport closes; then it closes conn.
func (t *Transport) ServeStream(conn net.Conn) {
	defer conn.Close()
	if !t.trackStream(conn) {
		return
	}
	defer t.untrackStream(conn)
	r := bufio.NewReaderSize(conn, 64<<10)
	_ = conn.SetDeadline(time.Now().Add(t.timeout))
	preface := make([]byte, len(StreamPreface))
	if _, err := io.ReadFull(r, preface); err != nil || !IsStreamPreface(preface) {
		return
	}
	if _, err := io.WriteString(conn, StreamPreface); err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{}) // the leader keeps it open while it leads
	for {
		req := new(leasepb.RaftAppendEntriesRequest)
		if err := readFrame(r, req); err != nil {
			if errors.Is(err, ErrMalformed) || errors.Is(err, errFrameTooLarge) {
				_ = t.refuse("AppendEntriesPipeline", err)
			}
			return
		}
		// A malformed request ends the stream: the peer's later requests
		// were built on it.
		cmd, err := t.decodeAppendEntriesRequest(req)
		if err != nil {
			_ = t.refuse("AppendEntriesPipeline", err)
			return
		}
		out, err := t.pipelineAnswer(t.ctx, cmd)
		if err != nil {
			return
		}
		_ = conn.SetWriteDeadline(time.Now().Add(t.timeout))
		if err := writeFrame(conn, out); err != nil {
			return
		}
	}
}

// pipelineAnswer hands a pipelined AppendEntries to raft and returns the
// answer to send back. An error raft answers travels in the answer; an
// error returned here ends the stream (the transport closed, ctx ended, or
// raft answered with something else than an AppendEntriesResponse).
func (t *Transport) pipelineAnswer(ctx context.Context, cmd *raft.AppendEntriesRequest) (*leasepb.RaftAppendEntriesPipelineResponse, error) {
	resp, err := t.dispatch(ctx, cmd)
	out := &leasepb.RaftAppendEntriesPipelineResponse{}
	switch r := resp.(type) {
	case *raft.AppendEntriesResponse:
		t.terms.observe(r.Term)
		out.Response = appendEntriesResponseToProto(r)
		if err != nil {
			out.Error = err.Error()
		}
	default:
		if err == nil {
			return nil, errUnexpectedResponse
		}
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return nil, err
		}
		out.Error = err.Error()
	}
	return out, nil
}

// trackStream notes a served stream so that Close can end it; false if the
// transport is closed.
func (t *Transport) trackStream(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.streams[conn] = struct{}{}
	t.streamsWG.Add(1)
	return true
}

func (t *Transport) untrackStream(conn net.Conn) {
	t.mu.Lock()
	delete(t.streams, conn)
	t.mu.Unlock()
	t.streamsWG.Done()
}

// ServedStreams is how many pipeline streams this transport serves now:
// one per peer that leads and replicates to this node over a stream.
func (t *Transport) ServedStreams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.streams)
}
