package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// result of an RPC run in the background.
func goCall(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

func waitErr(t *testing.T, ch <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(within):
		t.Fatalf("call still pending after %v", within)
		return nil
	}
}

// takeRPC takes one RPC from trans without answering it.
func takeRPC(t *testing.T, trans *Transport) raft.RPC {
	t.Helper()
	select {
	case rpc := <-trans.Consumer():
		return rpc
	case <-time.After(5 * time.Second):
		t.Fatalf("no RPC arrived")
		return raft.RPC{}
	}
}

// Closing the sending transport fails an RPC that is waiting for an answer.
func TestCloseFailsPendingOutgoingRPC(t *testing.T) {
	n1, n2 := newNode(t, "", time.Minute), newNode(t, "", time.Minute)
	args := testAppendArgs()
	ch := goCall(func() error {
		var out raft.AppendEntriesResponse
		return n2.trans.AppendEntries("id1", n1.trans.LocalAddr(), &args, &out)
	})
	takeRPC(t, n1.trans) // the call is now in flight, and will never be answered
	if err := n2.trans.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := waitErr(t, ch, 5*time.Second)
	if !errors.Is(err, raft.ErrTransportShutdown) || !errors.Is(err, ErrClosed) {
		t.Fatalf("pending RPC after Close: got %v, want ErrClosed and raft.ErrTransportShutdown", err)
	}
	// And later calls fail at once.
	var out raft.RequestVoteResponse
	if err := n2.trans.RequestVote("id1", n1.trans.LocalAddr(), &raft.RequestVoteRequest{}, &out); !errors.Is(err, ErrClosed) {
		t.Fatalf("RPC after Close: got %v, want ErrClosed", err)
	}
	if _, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr()); !errors.Is(err, ErrClosed) {
		t.Fatalf("pipeline after Close: got %v, want ErrClosed", err)
	}
}

// Closing the receiving transport answers RPCs that wait for raft with
// Unavailable instead of leaving them to their deadline.
func TestCloseFailsPendingIncomingRPC(t *testing.T) {
	n1, n2 := newNode(t, "", time.Minute), newNode(t, "", time.Minute)
	args := testAppendArgs()
	start := time.Now()
	ch := goCall(func() error {
		var out raft.AppendEntriesResponse
		return n2.trans.AppendEntries("id1", n1.trans.LocalAddr(), &args, &out)
	})
	takeRPC(t, n1.trans)
	if err := n1.trans.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := waitErr(t, ch, 5*time.Second)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RPC to a closed transport: got %v (code %v), want Unavailable", err, status.Code(err))
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Fatalf("RPC took %v: it waited for its deadline", elapsed)
	}
}

// An RPC nobody answers ends at its deadline.
func TestUnaryDeadline(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", 300*time.Millisecond)
	var out raft.RequestVoteResponse
	err := n2.trans.RequestVote("id1", n1.trans.LocalAddr(), &raft.RequestVoteRequest{Term: 1}, &out)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("unanswered RPC: got %v, want DeadlineExceeded", err)
	}
}

// An RPC to an address where nothing listens fails rather than hangs.
func TestUnreachablePeer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := raft.ServerAddress(lis.Addr().String())
	_ = lis.Close()
	n := newNode(t, "", testTimeout)
	ch := goCall(func() error {
		var out raft.RequestVoteResponse
		return n.trans.RequestVote("id1", dead, &raft.RequestVoteRequest{Term: 1}, &out)
	})
	if err := waitErr(t, ch, 10*time.Second); err == nil {
		t.Fatalf("RPC to a dead address succeeded")
	}
	if _, err := n.trans.AppendEntriesPipeline("id1", dead); err == nil {
		t.Fatalf("pipeline to a dead address opened")
	}
}

// Closing a pipeline fails the futures still waiting for an answer.
func TestPipelineCloseFailsFutures(t *testing.T) { forEachWire(t, testPipelineCloseFailsFutures) }

func testPipelineCloseFailsFutures(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node) {
	n1, n2 := newNode(t, "", time.Minute), newNode(t, "", time.Minute)
	pipe, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	args := testAppendArgs()
	var futures []raft.AppendFuture
	for i := 0; i < 3; i++ {
		f, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
		if err != nil {
			t.Fatalf("AppendEntries %d: %v", i, err)
		}
		futures = append(futures, f)
	}
	takeRPC(t, n1.trans) // the receiver answers requests one by one: the rest wait behind it
	if err := pipe.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, f := range futures {
		ch := goCall(f.Error)
		if err := waitErr(t, ch, 5*time.Second); !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("future %d after Close: got %v, want raft.ErrPipelineShutdown", i, err)
		}
		if f.Response().Success {
			t.Fatalf("future %d: failed future reports success", i)
		}
	}
	if err := pipe.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Closing the transport closes its pipelines.
func TestCloseClosesPipelines(t *testing.T) { forEachWire(t, testCloseClosesPipelines) }

func testCloseClosesPipelines(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node) {
	n1, n2 := newNode(t, "", time.Minute), newNode(t, "", time.Minute)
	pipe, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	args := testAppendArgs()
	f, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	takeRPC(t, n1.trans)
	if err := n2.trans.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := waitErr(t, goCall(f.Error), 5*time.Second); err == nil {
		t.Fatalf("future survived transport Close")
	}
	if _, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse)); !errors.Is(err, raft.ErrPipelineShutdown) {
		t.Fatalf("AppendEntries on a pipeline of a closed transport: got %v, want ErrPipelineShutdown", err)
	}
}

// A pipelined request nobody answers fails at its deadline, and so does
// everything queued behind it.
func TestPipelineDeadline(t *testing.T) { forEachWire(t, testPipelineDeadline) }

func testPipelineDeadline(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", 300*time.Millisecond)
	pipe, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer pipe.Close()
	args := testAppendArgs()
	f1, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	f2, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	for i, f := range []raft.AppendFuture{f1, f2} {
		select {
		case got := <-pipe.Consumer():
			if got != f {
				t.Fatalf("consumer returned futures out of order")
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("future %d never completed", i)
		}
		if err := f.Error(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("future %d: got %v, want DeadlineExceeded", i, err)
		}
	}
}

// A snapshot whose reader fails aborts the call on both sides.
func TestInstallSnapshotReaderError(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	readErr := errors.New("disk on fire")
	got := make(chan error, 1)
	go func() {
		select {
		case rpc := <-n1.trans.Consumer():
			buf := new(bytes.Buffer)
			_, err := buf.ReadFrom(rpc.Reader)
			got <- err
			rpc.Respond(nil, err)
		case <-time.After(5 * time.Second):
			got <- errors.New("no RPC arrived")
		}
	}()
	args := raft.InstallSnapshotRequest{Term: 3, Size: 2 * snapshotChunkSize}
	var out raft.InstallSnapshotResponse
	data := &failingReader{n: snapshotChunkSize + 10, err: readErr}
	err := n2.trans.InstallSnapshot("id1", n1.trans.LocalAddr(), &args, &out, data)
	if !errors.Is(err, readErr) {
		t.Fatalf("InstallSnapshot with a failing reader: got %v, want %v", err, readErr)
	}
	if rerr := <-got; !errors.Is(rerr, ErrSnapshotAborted) {
		t.Fatalf("receiver read: got %v, want ErrSnapshotAborted", rerr)
	}
}

// failingReader yields n zero bytes, then err.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	clear(p)
	r.n -= len(p)
	return len(p), nil
}

// A peer keeps its pipeline open while it leads. Closing the receiving
// transport ends that stream on the receiving side, so that a node that is
// stopping can stop its gRPC server gracefully without waiting for the peer.
func TestReceiverCloseEndsIncomingPipeline(t *testing.T) {
	forEachWire(t, testReceiverCloseEndsIncomingPipeline)
}

func testReceiverCloseEndsIncomingPipeline(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node) {
	n1, n2 := newNode(t, "", time.Minute), newNode(t, "", time.Minute)
	pipe, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer pipe.Close()
	args := testAppendArgs()
	f, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	rpc := takeRPC(t, n1.trans)
	rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	if err := waitErr(t, goCall(f.Error), 5*time.Second); err != nil {
		t.Fatalf("pipelined request: %v", err)
	}
	// The stream is open and idle. Close the receiver, then stop its server
	// gracefully: that must not wait for the peer to close the stream.
	if err := n1.trans.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	stopped := goCall(func() error { n1.server.GracefulStop(); return nil })
	if err := waitErr(t, stopped, 5*time.Second); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}
