package server

import (
	"testing"

	"go.uber.org/goleak"
)

// Every node the tests start must stop every goroutine it started: raft, the
// transport, gRPC servers and clients, the lessor, the leader loops.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
