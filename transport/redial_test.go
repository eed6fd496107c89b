package transport

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

// flakyName is a name service for one peer name, as a context dialer: the
// name has no record until it is published (a container or pod that is down
// has none), then it leads to addr.
type flakyName struct {
	name      string
	addr      string
	published atomic.Bool
}

func (f *flakyName) dial(ctx context.Context, target string) (net.Conn, error) {
	if target != f.name || !f.published.Load() {
		return nil, &net.DNSError{Err: "no such host", Name: target, IsNotFound: true}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", f.addr)
}

// TestPeerFoundAgainWhenItsNameComesBack: a peer whose name did not resolve
// is reached as soon as it does, because the transport's connections look
// the name up on every attempt (dialtarget.For). With grpc's dns resolver the
// lookup of a name that has never resolved (here: .invalid, never in any
// DNS) would keep failing, on a schedule that grows to 120 s, and no RPC
// would get through.
func TestPeerFoundAgainWhenItsNameComesBack(t *testing.T) {
	n1 := newNode(t, "", testTimeout)
	name := &flakyName{name: "n1.leasecluster.invalid:7001", addr: string(n1.trans.LocalAddr())}
	n2 := newNodeConfig(t, "", Config{Timeout: 200 * time.Millisecond, CheckCommand: AnyCommand,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(name.dial)}})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case rpc := <-n1.trans.Consumer():
				rpc.Respond(&raft.RequestVoteResponse{Term: 1, Granted: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	vote := func() error {
		args := raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id2"), Addr: []byte("n2")}, Term: 1}
		var out raft.RequestVoteResponse
		if err := n2.trans.RequestVote("id1", raft.ServerAddress(name.name), &args, &out); err != nil {
			return err
		}
		if !out.Granted {
			return fmt.Errorf("vote not granted: %+v", out)
		}
		return nil
	}
	if err := vote(); err == nil {
		t.Fatal("a RequestVote reached a peer whose name has no record")
	}
	name.published.Store(true)
	if err := proctest.Eventually(10*time.Second, 20*time.Millisecond, vote); err != nil {
		t.Fatalf("the peer was not reached after its name came back: %v", err)
	}
}
