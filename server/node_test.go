package server

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestStartFailsCleanly: a node that cannot start (a port taken, as when an
// operator starts a second node on the same address) returns the reason,
// and leaves nothing running (goleak in TestMain checks the goroutines).
func TestStartFailsCleanly(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	base := Config{Name: "n1", HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: hclog.NewNullLogger()}

	grpcTaken := base
	grpcTaken.DataDir = t.TempDir()
	grpcTaken.GRPCAddr = taken.Addr().String()
	if _, err := New(grpcTaken); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("gRPC port taken: %v, want an address-in-use error", err)
	}

	httpTaken := base
	httpTaken.DataDir = t.TempDir()
	httpTaken.GRPCAddr = "127.0.0.1:0"
	httpTaken.HTTPAddr = taken.Addr().String()
	httpTaken.InitialCluster = []Peer{{Name: "n1", Address: "127.0.0.1:1"}}
	if _, err := New(httpTaken); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("HTTP port taken: %v, want an address-in-use error", err)
	}
	// The data dir is free again: the same node starts once the port is.
	taken.Close()
	n, err := New(httpTaken)
	if err != nil {
		t.Fatalf("restart after the port was freed: %v", err)
	}
	n.Abort()
}
