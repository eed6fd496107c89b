package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/leasecluster/leasecluster/internal/proctest"
	"github.com/leasecluster/leasecluster/lessor"
)

// Timings of the test clusters: fast elections on loopback, still safe
// (MinTTL and Extend follow the election timeout as the rules require).
const (
	testElection = 400 * time.Millisecond
	testExtend   = testElection
)

// testCluster runs real nodes in this process: real raft-boltdb files in
// temp dirs and real gRPC on loopback.
type testCluster struct {
	t    testing.TB
	cfgs []Config

	mu    sync.Mutex // guards nodes: background samplers read it while tests kill nodes
	nodes []*Node    // nil while a node is stopped
}

// running returns the running nodes (a copy; stopped ones are nil).
func (c *testCluster) running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// node returns node i, or nil while it is stopped.
func (c *testCluster) node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func newTestCluster(t testing.TB, size int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	var peers []Peer
	var listeners []net.Listener
	for i := range size {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, lis)
		peers = append(peers, Peer{Name: fmt.Sprintf("n%d", i+1), Address: lis.Addr().String()})
	}
	for i := range size {
		cfg := Config{
			Name:             peers[i].Name,
			DataDir:          t.TempDir(),
			GRPCAddr:         peers[i].Address,
			InitialCluster:   peers,
			HeartbeatTimeout: testElection,
			ElectionTimeout:  testElection,
			Extend:           testExtend,
			ApplyTimeout:     5 * time.Second,
			Logger:           hclog.New(&hclog.LoggerOptions{Name: peers[i].Name, Level: testLogLevel, Output: testWriter{t}}),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	// All at once, as a deployment starts them: a node started after the
	// others have elected a leader would find the cluster running and join
	// it as a replacement rather than bootstrap (runningCluster).
	c.nodes = make([]*Node, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		wg.Go(func() { c.nodes[i], errs[i] = NewWithListener(c.cfgs[i], listeners[i]) })
	}
	wg.Wait()
	t.Cleanup(c.stopAll)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return c
}

// testWriter sends node logs to the test log, shown only on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func (c *testCluster) stopAll() {
	for i, n := range c.running() {
		if n != nil {
			n.Abort()
			c.setNode(i, nil)
		}
	}
}

func (c *testCluster) setNode(i int, n *Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i] = n
}

// kill stops node i at once, as a crash would.
func (c *testCluster) kill(i int) {
	n := c.node(i)
	c.setNode(i, nil)
	n.Abort()
}

// leader waits for exactly one serving leader among the running nodes.
func (c *testCluster) leader() (int, *Node) {
	c.t.Helper()
	var idx int
	err := eventually(15*time.Second, func() error {
		found := -1
		for i, n := range c.running() {
			if n != nil && n.IsLeader() {
				if found >= 0 {
					return errors.New("two nodes lead")
				}
				found = i
			}
		}
		if found < 0 {
			return errors.New("no leader")
		}
		idx = found
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return idx, c.node(idx)
}

// leaderOtherThan waits until a node other than old leads. A transfer's
// future returns once old's raft has stepped down, but old's own view of its
// leadership (leadership.leading) follows a moment later, and the new leader's
// a moment after its election: leader() alone may still see old.
func (c *testCluster) leaderOtherThan(old *Node) (int, *Node) {
	c.t.Helper()
	var idx int
	var ld *Node
	err := eventually(15*time.Second, func() error {
		for i, n := range c.running() {
			if n != nil && n != old && n.IsLeader() && !old.IsLeader() {
				idx, ld = i, n
				return nil
			}
		}
		return fmt.Errorf("leadership has not moved from %s", old.Name())
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return idx, ld
}

// converge waits until every running node has applied the same entries and
// holds the same state hash.
func (c *testCluster) converge() string {
	c.t.Helper()
	var hash string
	err := eventually(15*time.Second, func() error {
		hash = ""
		var index uint64
		for _, n := range c.running() {
			if n == nil {
				continue
			}
			s := n.info.status(true)
			if hash == "" {
				hash, index = s.StateHash, s.AppliedIndex
				continue
			}
			if s.StateHash != hash || s.AppliedIndex != index {
				return fmt.Errorf("%s at index %d hash %.8s, others at %d hash %.8s", s.Name, s.AppliedIndex, s.StateHash, index, hash)
			}
		}
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return hash
}

// eventually retries f every 10 ms until it succeeds or the timeout passes.
func eventually(timeout time.Duration, f func() error) error {
	return proctest.Eventually(timeout, 10*time.Millisecond, f)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogLevel is the nodes' log level in tests (logs show only on failure).
var testLogLevel = hclog.Warn

// renewOne renews one lease through the renewer, as a KeepAlive stream's
// batch of one would be, and returns its TTL.
func renewOne(ctx context.Context, n *Node, id lessor.LeaseID) (int64, error) {
	res, err := n.renewer.renew(ctx, []lessor.LeaseID{id}, nil)
	if err != nil {
		return 0, err
	}
	return res[0].TTL, res[0].Err
}
