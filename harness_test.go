package leasecluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/internal/proctest"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/server"
)

// The black-box harness: real nodes started through the exported server API
// (raft-boltdb in temp dirs, gRPC on loopback ports the kernel picks),
// observed and driven only through the public client library and the public
// gRPC API (leasepb) for what the client does not offer: serializable reads
// of one node and the state hash.

// Timings of the test clusters: fast elections on loopback, still safe
// (MinTTL and Extend follow the election timeout as the rules require).
const (
	testElection = 400 * time.Millisecond
	testExtend   = testElection         // server.Config.Extend below
	minTTL       = testElection * 3 / 2 // the default MinTTL for that election timeout (rule 4)
)

// cluster runs real nodes in this process. Only the test goroutine touches it.
type cluster struct {
	t     *testing.T
	cfgs  []server.Config
	nodes []*server.Node // nil while a node is stopped

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // public gRPC API, one channel per node address
}

func startCluster(t *testing.T, size int, tweak func(*server.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, conns: map[string]*grpc.ClientConn{}}
	t.Cleanup(c.stop)
	var peers []server.Peer
	var listeners []net.Listener
	for i := range size {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, lis)
		peers = append(peers, server.Peer{Name: fmt.Sprintf("n%d", i+1), Address: lis.Addr().String()})
	}
	for i := range size {
		cfg := server.Config{
			Name:             peers[i].Name,
			DataDir:          t.TempDir(),
			GRPCAddr:         peers[i].Address,
			InitialCluster:   peers,
			HeartbeatTimeout: testElection,
			ElectionTimeout:  testElection,
			Extend:           testExtend,
			ApplyTimeout:     5 * time.Second,
			Logger:           hclog.New(&hclog.LoggerOptions{Name: peers[i].Name, Level: hclog.Warn, Output: testWriter{t}}),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		n, err := server.NewWithListener(cfg, listeners[i])
		if err != nil {
			for _, lis := range listeners[i+1:] {
				lis.Close()
			}
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	return c
}

// testWriter sends node logs to the test log, shown only on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// stop closes the API channels and aborts every running node.
func (c *cluster) stop() {
	c.mu.Lock()
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = nil
	c.mu.Unlock()
	for i, n := range c.nodes {
		if n != nil {
			n.Abort()
			c.nodes[i] = nil
		}
	}
}

// endpoints are the nodes' gRPC addresses, running or not.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, cfg := range c.cfgs {
		eps = append(eps, cfg.GRPCAddr)
	}
	return eps
}

// client returns a client of the whole cluster, closed when the test ends
// (before the nodes stop: cleanups run last-registered first).
func (c *cluster) client() *client.Client {
	c.t.Helper()
	cl, err := client.New(context.Background(), c.endpoints(), client.WithLogger(hclog.New(&hclog.LoggerOptions{Name: "client", Level: hclog.Warn, Output: testWriter{c.t}})))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// conn is the public gRPC API of node i (it reconnects when the node restarts).
func (c *cluster) conn(i int) *grpc.ClientConn {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	addr := c.cfgs[i].GRPCAddr
	if cc := c.conns[addr]; cc != nil {
		return cc
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond}}))
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns[addr] = cc
	return cc
}

// status asks node i for its status; withHash adds its state hash.
func (c *cluster) status(ctx context.Context, i int, withHash bool) (*leasepb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return leasepb.NewClusterClient(c.conn(i)).Status(ctx, &leasepb.StatusRequest{StateHash: withHash})
}

// getOn reads an item from node i's own state (a serializable read).
func (c *cluster) getOn(ctx context.Context, i int, key string) (client.Item, error) {
	resp, err := leasepb.NewItemsClient(c.conn(i)).Get(ctx, &leasepb.GetRequest{Key: key, Serializable: true})
	if err != nil {
		return client.Item{}, err
	}
	it := resp.GetItem()
	return client.Item{Key: it.GetKey(), LeaseID: it.GetLeaseId(), Value: it.GetValue(), Revision: it.GetRevision()}, nil
}

// timeToLiveOn reads a lease, with its keys, from node i's own state.
func (c *cluster) timeToLiveOn(ctx context.Context, i int, id int64) (*leasepb.TimeToLiveResponse, error) {
	return leasepb.NewLeasesClient(c.conn(i)).TimeToLive(ctx, &leasepb.TimeToLiveRequest{Id: id, Keys: true, Serializable: true})
}

// leasesOn lists the leases in node i's own state.
func (c *cluster) leasesOn(ctx context.Context, i int) ([]*leasepb.LeaseStatus, error) {
	resp, err := leasepb.NewLeasesClient(c.conn(i)).Leases(ctx, &leasepb.LeasesRequest{Serializable: true})
	return resp.GetLeases(), err
}

func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// kill stops node i at once, as a crash would.
func (c *cluster) kill(i int) {
	c.nodes[i].Abort()
	c.nodes[i] = nil
}

// restart starts node i again from its data dir on the same address.
func (c *cluster) restart(i int) {
	c.t.Helper()
	var lis net.Listener
	err := eventually(10*time.Second, func() (err error) {
		lis, err = net.Listen("tcp", c.cfgs[i].GRPCAddr)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := server.NewWithListener(c.cfgs[i], lis)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = n
}

// leader waits until exactly one running node reports itself leader and
// returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	var idx int
	err := eventually(15*time.Second, func() error {
		found := -1
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			s, err := c.status(context.Background(), i, false)
			if err != nil {
				return err
			}
			if s.GetRole() == "leader" {
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
	return idx
}

// converge waits until every running node has applied the same entries and
// holds the same state hash, and returns the hash.
func (c *cluster) converge() string {
	c.t.Helper()
	var hash string
	err := eventually(15*time.Second, func() error {
		hash = ""
		var index uint64
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			s, err := c.status(context.Background(), i, true)
			if err != nil {
				return err
			}
			if hash == "" {
				hash, index = s.GetStateHash(), s.GetAppliedIndex()
				continue
			}
			if s.GetStateHash() != hash || s.GetAppliedIndex() != index {
				return fmt.Errorf("%s at index %d hash %.8s, others at %d hash %.8s", s.GetName(), s.GetAppliedIndex(), s.GetStateHash(), index, hash)
			}
		}
		if hash == "" {
			return errors.New("no state hash")
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

// ctxT bounds a test's calls.
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// grantMany grants n leases concurrently (so they share log entries).
func grantMany(t *testing.T, cl *client.Client, n int, ttl time.Duration) []int64 {
	t.Helper()
	ids := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			l, err := cl.Grant(ctx, ttl)
			ids[i], errs[i] = l.ID, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ids
}
