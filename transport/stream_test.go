package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/internal/proctest"
	"github.com/leasecluster/leasecluster/leasepb"
)

// waitStreams waits until trans serves want pipeline streams.
func waitStreams(t *testing.T, trans *Transport, want int) {
	t.Helper()
	if err := proctest.Eventually(5*time.Second, 5*time.Millisecond, func() error {
		if got := trans.ServedStreams(); got != want {
			return fmt.Errorf("serving %d pipeline streams, want %d", got, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// appendOnce sends one request over pipe and has receiver answer it with
// success; it fails the test unless the future succeeds.
func appendOnce(t *testing.T, pipe raft.AppendPipeline, receiver *Transport) {
	t.Helper()
	wait := respond(t, receiver, 1, func(_ int, rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 10, Success: true}, nil)
	})
	args := testAppendArgs()
	f, err := pipe.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	if err := waitErr(t, goCall(f.Error), 5*time.Second); err != nil || !f.Response().Success {
		t.Fatalf("pipelined request: err %v, response %#v", err, *f.Response())
	}
	wait()
}

// wantGRPCWire fails the test unless pipe runs over a gRPC stream.
func wantGRPCWire(t *testing.T, pipe raft.AppendPipeline) {
	t.Helper()
	if w := pipe.(*pipeline).wire; w == nil {
		t.Fatal("pipeline without a wire")
	} else if _, ok := w.(*grpcWire); !ok {
		t.Fatalf("pipeline runs over %T, want a gRPC stream", w)
	}
}

// A pipeline between two stream nodes runs over a pipeline stream, not
// gRPC: the receiver serves it while the pipeline is open, and not after.
func TestStreamServesPipeline(t *testing.T) {
	n1, n2 := newStreamNode(t, "", testTimeout), newStreamNode(t, "", testTimeout)
	pipe, err := n2.trans.AppendEntriesPipeline("id1", n1.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	if got := n1.trans.ServedStreams(); got != 1 {
		t.Fatalf("receiver serves %d pipeline streams after the pipeline opened, want 1", got)
	}
	appendOnce(t, pipe, n1.trans)
	if _, ok := n2.trans.LastContact(n1.trans.LocalAddr()); !ok {
		t.Fatalf("no contact recorded for an answer in the request's term")
	}
	if err := pipe.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitStreams(t, n1.trans, 0)
}

// A peer that serves only gRPC (a node of an older version) refuses the
// pipeline stream; the pipeline then runs over gRPC.
func TestStreamFallsBackToGRPC(t *testing.T) {
	old, n2 := newNode(t, "", testTimeout), newStreamNode(t, "", testTimeout)
	if _, err := n2.trans.openStream(string(old.trans.LocalAddr())); !errors.Is(err, ErrStreamRefused) {
		t.Fatalf("pipeline stream to a gRPC-only peer: got %v, want ErrStreamRefused", err)
	}
	pipe, err := n2.trans.AppendEntriesPipeline("id1", old.trans.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer pipe.Close()
	wantGRPCWire(t, pipe)
	appendOnce(t, pipe, old.trans)
}

// openRawStream dials addr and exchanges the preface by hand.
func openRawStream(t *testing.T, addr raft.ServerAddress) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", string(addr), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, StreamPreface); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, len(StreamPreface))
	if _, err := io.ReadFull(conn, ack); err != nil || !IsStreamPreface(ack) {
		t.Fatalf("preface answered %q, %v", ack, err)
	}
	return conn
}

// A malformed frame (bytes that are no request, a request that fails the
// checks, or a length beyond the bound) ends the stream, and raft never
// sees it.
func TestStreamMalformedEndsStream(t *testing.T) {
	n := newStreamNode(t, "", testTimeout)
	badTerm, err := proto.Marshal(&leasepb.RaftAppendEntriesRequest{Term: math.MaxUint64, Header: &leasepb.RaftRPCHeader{Id: []byte("x"), Addr: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	for name, bytes := range map[string][]byte{
		"not protobuf":     frame([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}),
		"fails the checks": frame(badTerm),
		"too long":         binary.BigEndian.AppendUint32(nil, maxFrame+1),
	} {
		t.Run(name, func(t *testing.T) {
			conn := openRawStream(t, n.trans.LocalAddr())
			if _, err := conn.Write(bytes); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatalf("the stream answered a malformed frame")
			}
			select {
			case rpc := <-n.trans.Consumer():
				t.Fatalf("raft got %T from a malformed frame", rpc.Command)
			default:
			}
			waitStreams(t, n.trans, 0)
		})
	}
}

// Over TLS a peer of an older version agrees on no protocol of the pipeline
// stream's (its server offers only h2): the stream is refused at the
// handshake and the pipeline runs over gRPC.
func TestStreamFallsBackOverTLS(t *testing.T) {
	ca, err := certs.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue("n1", []string{"127.0.0.1"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old, err := New(Config{LocalAddr: raft.ServerAddress(lis.Addr().String()), Timeout: testTimeout, CheckCommand: AnyCommand})
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.WaitForHandlers(true), grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	old.Register(s)
	served := make(chan struct{})
	go func() { defer close(served); _ = s.Serve(lis) }()
	t.Cleanup(func() { old.Close(); s.Stop(); <-served })

	streamTLS := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, NextProtos: []string{StreamALPN}}
	n2 := newNodeConfig(t, "", Config{Timeout: testTimeout, CheckCommand: AnyCommand,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}))},
		DialStream: func(ctx context.Context, addr string) (net.Conn, error) {
			d := tls.Dialer{Config: streamTLS}
			return d.DialContext(ctx, "tcp", addr)
		}})
	if _, err := n2.trans.openStream(string(old.LocalAddr())); !errors.Is(err, ErrStreamRefused) {
		t.Fatalf("pipeline stream to a TLS peer without it: got %v, want ErrStreamRefused", err)
	}
	pipe, err := n2.trans.AppendEntriesPipeline("id1", old.LocalAddr())
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer pipe.Close()
	wantGRPCWire(t, pipe)
	appendOnce(t, pipe, old)
}

// Closing the transport ends a pipeline stream's opening exchange at once,
// not at its deadline, when the peer accepted the connection but never
// answers the preface.
func TestCloseEndsStreamOpening(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := lis.Accept(); err == nil {
			accepted <- c // held open, unanswered
		}
	}()
	n := newStreamNode(t, "", time.Minute)
	opened := goCall(func() error {
		_, err := n.trans.AppendEntriesPipeline("id1", raft.ServerAddress(lis.Addr().String()))
		return err
	})
	select {
	case c := <-accepted:
		defer c.Close()
		// The preface arriving means the opener waits for the answer now.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(StreamPreface))); err != nil {
			t.Fatalf("no preface: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pipeline stream never connected")
	}
	if err := n.trans.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, opened, 5*time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("opening a pipeline stream across Close: got %v, want ErrClosed", err)
	}
}
