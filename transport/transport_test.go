package transport

// Contract tests adapted from hashicorp/raft's transport_test.go and
// net_transport_test.go, run over real gRPC servers on loopback.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

const testTimeout = 2 * time.Second

// respond consumes RPCs from trans in a goroutine, answering each with
// answer; the returned function waits for n of them (or fails the test).
func respond(t *testing.T, trans *Transport, n int, answer func(i int, rpc raft.RPC)) (wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			select {
			case rpc := <-trans.Consumer():
				answer(i, rpc)
			case <-time.After(5 * time.Second):
				t.Errorf("timed out waiting for RPC %d", i)
				return
			}
		}
	}()
	return func() { <-done }
}

var testConfiguration = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "id1", Address: "kenny"},
	{Suffrage: raft.Nonvoter, ID: "id2", Address: "cartman"},
}}

func testAppendArgs() raft.AppendEntriesRequest {
	return raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id2"), Addr: []byte("cartman")},
		Term:         10,
		Leader:       []byte("cartman"),
		PrevLogEntry: 100,
		PrevLogTerm:  4,
		Entries: []*raft.Log{
			{Index: 101, Term: 4, Type: raft.LogNoop},
			{
				Index: 102, Term: 4, Type: raft.LogCommand,
				Data:       []byte("grant lease 7"),
				Extensions: []byte("ext"),
				AppendedAt: time.Date(2025, 11, 26, 7, 4, 5, 123456789, time.UTC),
			},
			{Index: 103, Term: 5, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(testConfiguration)},
		},
		LeaderCommitIndex: 90,
	}
}

func TestStartStop(t *testing.T) {
	n := newNode(t, "", testTimeout)
	if err := n.trans.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.trans.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrNoLocalAddr) {
		t.Fatalf("New without LocalAddr: got %v, want ErrNoLocalAddr", err)
	}
	if _, err := New(Config{LocalAddr: "x:1", Timeout: -1}); !errors.Is(err, ErrBadTimeout) {
		t.Fatalf("New with negative Timeout: got %v, want ErrBadTimeout", err)
	}
}

func TestAppendEntries(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := testAppendArgs()
	resp := raft.AppendEntriesResponse{
		RPCHeader:      raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id1"), Addr: []byte(n1.trans.LocalAddr())},
		Term:           4,
		LastLog:        90,
		Success:        true,
		NoRetryBackoff: true,
	}
	wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if !reflect.DeepEqual(req, &args) {
			t.Errorf("command mismatch:\n got %#v\nwant %#v", *req, args)
		}
		rpc.Respond(&resp, nil)
	})
	var out raft.AppendEntriesResponse
	if err := n2.trans.AppendEntries("id1", n1.trans.LocalAddr(), &args, &out); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	wait()
	if !reflect.DeepEqual(resp, out) {
		t.Fatalf("response mismatch:\n got %#v\nwant %#v", out, resp)
	}
}

func TestAppendEntriesPipeline(t *testing.T) { forEachWire(t, testAppendEntriesPipeline) }

func testAppendEntriesPipeline(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := testAppendArgs()
	const count = 10
	// Each answer differs, so that an out-of-order pairing shows.
	wait := respond(t, n1.trans, count, func(i int, rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if req.LeaderCommitIndex != uint64(i) {
			t.Errorf("request %d arrived with commit index %d", i, req.LeaderCommitIndex)
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: 4, LastLog: uint64(1000 + i), Success: true}, nil)
	})
	pipe, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer pipe.Close()
	reqs := make([]raft.AppendEntriesRequest, count)
	for i := range reqs {
		reqs[i] = args
		reqs[i].LeaderCommitIndex = uint64(i)
		if _, err := pipe.AppendEntries(&reqs[i], new(raft.AppendEntriesResponse)); err != nil {
			t.Fatalf("pipeline AppendEntries %d: %v", i, err)
		}
	}
	for i := 0; i < count; i++ {
		select {
		case f := <-pipe.Consumer():
			if err := f.Error(); err != nil {
				t.Fatalf("future %d: %v", i, err)
			}
			if f.Request() != &reqs[i] {
				t.Fatalf("future %d carries request %p, want %p", i, f.Request(), &reqs[i])
			}
			want := raft.AppendEntriesResponse{Term: 4, LastLog: uint64(1000 + i), Success: true}
			if !reflect.DeepEqual(*f.Response(), want) {
				t.Fatalf("future %d response %#v, want %#v", i, *f.Response(), want)
			}
			if f.Start().IsZero() {
				t.Fatalf("future %d has no start time", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for future %d", i)
		}
	}
	wait()
	if err := pipe.Close(); err != nil {
		t.Fatalf("pipeline Close: %v", err)
	}
	if _, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse)); !errors.Is(err, raft.ErrPipelineShutdown) {
		t.Fatalf("AppendEntries after Close: got %v, want ErrPipelineShutdown", err)
	}
}

func TestRequestVote(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := raft.RequestVoteRequest{
		RPCHeader:          raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id2"), Addr: []byte("butters")},
		Term:               20,
		Candidate:          []byte("butters"),
		LastLogIndex:       100,
		LastLogTerm:        19,
		LeadershipTransfer: true,
	}
	resp := raft.RequestVoteResponse{Term: 100, Peers: []byte("legacy"), Granted: true}
	wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
		req := rpc.Command.(*raft.RequestVoteRequest)
		if !reflect.DeepEqual(req, &args) {
			t.Errorf("command mismatch:\n got %#v\nwant %#v", *req, args)
		}
		rpc.Respond(&resp, nil)
	})
	var out raft.RequestVoteResponse
	if err := n2.trans.RequestVote("id1", n1.trans.LocalAddr(), &args, &out); err != nil {
		t.Fatalf("RequestVote: %v", err)
	}
	wait()
	if !reflect.DeepEqual(resp, out) {
		t.Fatalf("response mismatch:\n got %#v\nwant %#v", out, resp)
	}
}

func TestRequestPreVote(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := raft.RequestPreVoteRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id2"), Addr: []byte("butters")},
		Term:         20,
		LastLogIndex: 100,
		LastLogTerm:  19,
	}
	resp := raft.RequestPreVoteResponse{RPCHeader: raft.RPCHeader{ID: []byte("id1")}, Term: 21, Granted: true}
	wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
		req := rpc.Command.(*raft.RequestPreVoteRequest)
		if !reflect.DeepEqual(req, &args) {
			t.Errorf("command mismatch:\n got %#v\nwant %#v", *req, args)
		}
		rpc.Respond(&resp, nil)
	})
	var out raft.RequestPreVoteResponse
	if err := n2.trans.RequestPreVote("id1", n1.trans.LocalAddr(), &args, &out); err != nil {
		t.Fatalf("RequestPreVote: %v", err)
	}
	wait()
	if !reflect.DeepEqual(resp, out) {
		t.Fatalf("response mismatch:\n got %#v\nwant %#v", out, resp)
	}
}

func TestTimeoutNow(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id2"), Addr: []byte("kenny")}}
	resp := raft.TimeoutNowResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id1")}}
	wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
		req := rpc.Command.(*raft.TimeoutNowRequest)
		if !reflect.DeepEqual(req, &args) {
			t.Errorf("command mismatch:\n got %#v\nwant %#v", *req, args)
		}
		rpc.Respond(&resp, nil)
	})
	var out raft.TimeoutNowResponse
	if err := n2.trans.TimeoutNow("id1", n1.trans.LocalAddr(), &args, &out); err != nil {
		t.Fatalf("TimeoutNow: %v", err)
	}
	wait()
	if !reflect.DeepEqual(resp, out) {
		t.Fatalf("response mismatch:\n got %#v\nwant %#v", out, resp)
	}
}

func TestInstallSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"small", []byte("0123456789")},
		// Several chunks, the last one partial.
		{"chunked", randomBytes(t, 3*snapshotChunkSize+12345)},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
			args := raft.InstallSnapshotRequest{
				RPCHeader:          raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte("kyle")},
				SnapshotVersion:    raft.SnapshotVersionMax,
				Term:               10,
				Leader:             []byte("kyle"),
				LastLogIndex:       100,
				LastLogTerm:        9,
				Peers:              []byte("blah blah"),
				Configuration:      raft.EncodeConfiguration(testConfiguration),
				ConfigurationIndex: 42,
				Size:               int64(len(tc.data)),
			}
			resp := raft.InstallSnapshotResponse{Term: 10, Success: true}
			wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
				req := rpc.Command.(*raft.InstallSnapshotRequest)
				if !reflect.DeepEqual(req, &args) {
					t.Errorf("command mismatch:\n got %#v\nwant %#v", *req, args)
				}
				got, err := io.ReadAll(rpc.Reader)
				if err != nil {
					t.Errorf("reading snapshot: %v", err)
				}
				if !bytes.Equal(got, tc.data) {
					t.Errorf("snapshot data: got %d bytes, want %d (equal prefix: %v)", len(got), len(tc.data), bytes.HasPrefix(tc.data, got))
				}
				rpc.Respond(&resp, nil)
			})
			var out raft.InstallSnapshotResponse
			if err := n2.trans.InstallSnapshot("id1", n1.trans.LocalAddr(), &args, &out, bytes.NewReader(tc.data)); err != nil {
				t.Fatalf("InstallSnapshot: %v", err)
			}
			wait()
			if !reflect.DeepEqual(resp, out) {
				t.Fatalf("response mismatch:\n got %#v\nwant %#v", out, resp)
			}
		})
	}
}

// A receiver that answers before reading the data (raft rejecting a
// snapshot) must not leave the sender blocked on a full stream.
func TestInstallSnapshotRejectedUnread(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	data := randomBytes(t, 4*snapshotChunkSize)
	args := raft.InstallSnapshotRequest{Term: 3, Size: int64(len(data))}
	wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
		rpc.Respond(&raft.InstallSnapshotResponse{Term: 7, Success: false}, nil)
	})
	var out raft.InstallSnapshotResponse
	if err := n2.trans.InstallSnapshot("id1", n1.trans.LocalAddr(), &args, &out, bytes.NewReader(data)); err != nil {
		t.Fatalf("InstallSnapshot: %v", err)
	}
	wait()
	if out.Term != 7 || out.Success {
		t.Fatalf("response %#v, want term 7 and no success", out)
	}
}

// Data beyond the declared size is an error for raft's reader, not
// silently passed on.
func TestInstallSnapshotTooLong(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := raft.InstallSnapshotRequest{Term: 3, Size: 5}
	wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
		_, err := io.ReadAll(rpc.Reader)
		if !errors.Is(err, ErrSnapshotTooLong) {
			t.Errorf("reading an overlong snapshot: got %v, want ErrSnapshotTooLong", err)
		}
		rpc.Respond(nil, err)
	})
	var out raft.InstallSnapshotResponse
	err := n2.trans.InstallSnapshot("id1", n1.trans.LocalAddr(), &args, &out, bytes.NewReader([]byte("0123456789")))
	wait()
	if err == nil {
		t.Fatalf("InstallSnapshot of an overlong stream succeeded")
	}
}

func TestHeartbeatFastPath(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte("cartman")},
		Term:      10,
		Leader:    []byte("cartman"),
	}
	resp := raft.AppendEntriesResponse{Term: 4, LastLog: 90, Success: true}
	invoked := make(chan struct{}, 1)
	n1.trans.SetHeartbeatHandler(func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if !reflect.DeepEqual(req, &args) {
			t.Errorf("command mismatch:\n got %#v\nwant %#v", *req, args)
		}
		rpc.Respond(&resp, nil)
		invoked <- struct{}{}
	})
	// Nobody reads the Consumer channel: only the fast path can answer.
	var out raft.AppendEntriesResponse
	if err := n2.trans.AppendEntries("id1", n1.trans.LocalAddr(), &args, &out); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	if !reflect.DeepEqual(resp, out) {
		t.Fatalf("response mismatch:\n got %#v\nwant %#v", out, resp)
	}
	select {
	case <-invoked:
	default:
		t.Fatalf("fast path not used")
	}

	// A request with entries is not a heartbeat: it must go to Consumer.
	full := testAppendArgs()
	wait := respond(t, n1.trans, 1, func(_ int, rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 11}, nil)
	})
	if err := n2.trans.AppendEntries("id1", n1.trans.LocalAddr(), &full, &out); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	wait()
	if out.Term != 11 {
		t.Fatalf("non-heartbeat answered with term %d, want 11 from the consumer", out.Term)
	}
	select {
	case <-invoked:
		t.Fatalf("fast path used for a request with entries")
	default:
	}
}

func TestEncodeDecodePeer(t *testing.T) {
	n := newNode(t, "", testTimeout)
	local := n.trans.LocalAddr()
	if dec := n.trans.DecodePeer(n.trans.EncodePeer("id", local)); dec != local {
		t.Fatalf("encode/decode: got %q, want %q", dec, local)
	}
}

// An error raft answers with reaches the caller, unary and pipelined; the
// pipeline stays usable after it.
func TestRemoteError(t *testing.T) { forEachWire(t, testRemoteError) }

func testRemoteError(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	args := testAppendArgs()
	remote := errors.New("unsupported snapshot version 9")
	wait := respond(t, n1.trans, 3, func(i int, rpc raft.RPC) {
		if i == 2 {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 12, Success: true}, nil)
			return
		}
		rpc.Respond(nil, remote)
	})
	var out raft.AppendEntriesResponse
	err := n2.trans.AppendEntries("id1", n1.trans.LocalAddr(), &args, &out)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(remote.Error())) {
		t.Fatalf("unary AppendEntries: got %v, want an error carrying %q", err, remote)
	}
	pipe, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer pipe.Close()
	f1, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatalf("pipeline AppendEntries: %v", err)
	}
	f2, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatalf("pipeline AppendEntries: %v", err)
	}
	if err := f1.Error(); !errors.Is(err, ErrRemote) {
		t.Fatalf("first future: got %v, want ErrRemote", err)
	}
	if err := f2.Error(); err != nil || f2.Response().Term != 12 {
		t.Fatalf("second future: err %v, response %#v; want success with term 12", err, *f2.Response())
	}
	wait()
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
