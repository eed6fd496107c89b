package transport

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

// TestMain fails the run if any test leaves a goroutine behind: every
// transport, pipeline, gRPC server and raft node a test starts must end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// node is a Transport registered on its own gRPC server on loopback.
type node struct {
	trans  *Transport
	server *grpc.Server
}

// newNode starts a Transport served on 127.0.0.1:0 (or addr, to come back
// on a known port) and stops both at the end of the test.
// Its entries' commands are not checked (AnyCommand): the tests' FSMs take
// any bytes.
func newNode(t *testing.T, addr string, timeout time.Duration) *node {
	t.Helper()
	return newNodeConfig(t, addr, Config{Timeout: timeout, CheckCommand: AnyCommand})
}

// newNodeConfig is newNode with cfg (LocalAddr is the listener's).
func newNodeConfig(t *testing.T, addr string, cfg Config) *node {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	cfg.LocalAddr = raft.ServerAddress(lis.Addr().String())
	trans, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// WaitForHandlers makes Stop wait for every handler, so goleak sees
	// a quiet server.
	opts := []grpc.ServerOption{grpc.WaitForHandlers(true)}
	if cfg.DialStream != nil {
		opts = append(opts, grpc.Creds(NewPlainServerCreds(trans.ServeStream)))
	}
	s := grpc.NewServer(opts...)
	trans.Register(s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(lis)
	}()
	n := &node{trans: trans, server: s}
	t.Cleanup(func() {
		n.stop()
		<-served
	})
	return n
}

// stop closes the transport first, so that handlers waiting for raft
// return, then the server. It may be called more than once.
func (n *node) stop() {
	_ = n.trans.Close()
	n.server.Stop()
}

// dialTCP is a Config.DialStream of plain TCP.
func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// newStreamNode is newNode with pipeline streams: it dials them, and its
// server hands them to its transport.
func newStreamNode(t *testing.T, addr string, timeout time.Duration) *node {
	t.Helper()
	return newNodeConfig(t, addr, Config{Timeout: timeout, CheckCommand: AnyCommand, DialStream: dialTCP})
}

// forEachWire runs a pipeline test over each wire: gRPC streams, and
// pipeline streams (after which the receiving node must have served one).
func forEachWire(t *testing.T, test func(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node)) {
	t.Run("grpc", func(t *testing.T) { test(t, newNode) })
	t.Run("stream", func(t *testing.T) { test(t, newStreamNode) })
}
