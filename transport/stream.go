package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
)

// The pipeline stream: AppendEntries pipelining over a plain connection of
// its own (TCP, or TLS with StreamALPN) on the node's one port, instead of a
// gRPC stream. A gRPC stream message crosses two goroutines on each side
// (grpc-go's writer goroutine, which also yields once before it flushes a
// small write, and its reader goroutine) besides the handler's; on a loaded
// two-core machine each wake-up is tens of microseconds, and a pipelined
// AppendEntries is on every write's path twice (request and answer). Here
// the sender writes the frame itself and one goroutine per side reads.
// Everything else (votes, heartbeats, snapshots, and pipelines to a peer
// that refuses the stream) stays on gRPC. DESIGN.md, "The pipeline stream".
//
// The wire: the dialler sends StreamPreface, the server answers it, then
// each side sends frames: a 4-byte big-endian length and a protobuf message
// (requests leasepb.RaftAppendEntriesRequest, answers
// leasepb.RaftAppendEntriesPipelineResponse, one per request, in order).

const (
	// StreamPreface opens a pipeline stream, and the server echoes it. On
	// a plaintext port it is what tells a pipeline stream from gRPC (whose
	// connections open with the HTTP/2 preface, "PRI * HTTP/2.0...").
	StreamPreface = "LCRAFT1\n"
	// StreamALPN is the TLS application protocol of a pipeline stream: on
	// a TLS port the handshake, not the first bytes, tells it from gRPC
	// ("h2").
	StreamALPN = "leasecluster-raft-pipeline/1"

	// maxFrame bounds one frame, as the gRPC server's MaxRecvMsgSize does
	// a message: raft sends at most MaxAppendEntries entries at a time.
	maxFrame = 64 << 20
)

var (
	// ErrStreamRefused is returned by a Config.DialStream connection whose
	// peer does not speak the pipeline stream (a node of an older version):
	// the pipeline then runs over gRPC.
	ErrStreamRefused = errors.New("transport: peer does not serve the pipeline stream")

	errFrameTooLarge = errors.New("transport: frame larger than 64 MiB")
)

// IsStreamPreface reports whether b, a connection's first len(StreamPreface)
// bytes, opens a pipeline stream.
func IsStreamPreface(b []byte) bool { return string(b) == StreamPreface }

// openStream dials target for a pipeline stream and exchanges the preface,
// within the transport's timeout. A peer that answers anything but the
// preface, or ends the connection, or (on TLS) agreed on no protocol of
// ours, refuses the stream: ErrStreamRefused.
func (t *Transport) openStream(target string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	defer cancel()
	conn, err := t.dialStream(ctx, target)
	if err != nil {
		// An older node's TLS server knows no protocol of ours and says so.
		if strings.Contains(err.Error(), "no application protocol") {
			err = fmt.Errorf("%w: %w", ErrStreamRefused, err)
		}
		return nil, err
	}
	if tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok && tc.ConnectionState().NegotiatedProtocol != StreamALPN {
		conn.Close()
		return nil, ErrStreamRefused
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Close ends the exchange at once, not at the deadline.
	unwatch := context.AfterFunc(t.ctx, func() { conn.Close() })
	ack := make([]byte, len(StreamPreface))
	if _, err = io.WriteString(conn, StreamPreface); err == nil {
		_, err = io.ReadFull(conn, ack)
	}
	if !unwatch() {
		conn.Close()
		return nil, errClosed
	}
	switch {
	case err == nil && IsStreamPreface(ack):
		_ = conn.SetDeadline(time.Time{})
		return conn, nil
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = ErrStreamRefused // an older node's gRPC server rejected the preface
	}
	conn.Close()
	return nil, err
}

// writeFrame sends m as one frame in one write.
func writeFrame(w io.Writer, m proto.Message) error {
	size := proto.Size(m)
	if size > maxFrame {
		return errFrameTooLarge
	}
	buf := make([]byte, 4, 4+size)
	binary.BigEndian.PutUint32(buf, uint32(size))
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// readFrame reads one frame into m.
func readFrame(r *bufio.Reader, m proto.Message) error {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(head[:])
	if size > maxFrame {
		return errFrameTooLarge
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if err := proto.Unmarshal(buf, m); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// streamWire is a pipeline's wire over a pipeline stream. The sender writes
// each frame itself; reads go through a buffer, so that a burst of answers
// costs one read.
type streamWire struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

func newStreamWire(conn net.Conn, timeout time.Duration) *streamWire {
	return &streamWire{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), timeout: timeout}
}

func (w *streamWire) send(req *leasepb.RaftAppendEntriesRequest, start time.Time) error {
	_ = w.conn.SetWriteDeadline(start.Add(w.timeout))
	return timeoutAsDeadline(writeFrame(w.conn, req))
}

func (w *streamWire) recv(deadline time.Time) (*leasepb.RaftAppendEntriesPipelineResponse, error) {
	_ = w.conn.SetReadDeadline(deadline)
	msg := new(leasepb.RaftAppendEntriesPipelineResponse)
	if err := readFrame(w.r, msg); err != nil {
		return nil, timeoutAsDeadline(err)
	}
	return msg, nil
}

func (w *streamWire) close() { w.conn.Close() }

// timeoutAsDeadline reports a connection deadline as the gRPC wire reports
// its timer: context.DeadlineExceeded.
func timeoutAsDeadline(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}
