// Package clienttest runs a fake leasecluster in process for tests of code
// that uses the client library (client, leasehttp, tools): a few gRPC
// "nodes" on loopback that share one in-memory lease table. One node (or
// none) leads; the others answer like followers, with Unavailable and a
// LeaderHint. Tests can move leadership, make replies get lost after the
// operation applied, stall renewals and expire leases.
//
// It is a model of the public API's behaviour, not of Raft: there is no log,
// and "replication" is the shared table.
package clienttest

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
)

// FirstLeaseID is the first ID the fake assigns. It is above 2^53 so that a
// JSON encoder that turns IDs into float64 numbers gets them wrong.
const FirstLeaseID int64 = 1<<53 + 1

// ErrBadNode is returned for a node index out of range.
var ErrBadNode = errors.New("clienttest: no such node")

// Cluster is a fake cluster. Its methods are safe for concurrent use.
type Cluster struct {
	nodes []*node

	mu      sync.Mutex // guards everything below
	leader  int        // index of the leading node; -1 for none
	term    uint64
	index   uint64 // bumped by every applied mutation; revisions come from it
	nextID  int64
	leases  map[int64]*lease
	items   map[string]*leasepb.Item
	results map[uint64]result   // request ID -> outcome, for deduplication
	reqIDs  map[string][]uint64 // method -> request IDs received on the leader, in order
	lose    map[string]int      // method -> how many next calls lose their reply after applying
	stall   chan struct{}       // non-nil while renewals stall; closed to release them
	streams map[*kaStream]struct{}
	renews  map[int64]int // lease -> acknowledged renewals
	arrived map[int64]int // lease -> renewals received by the leader, answered or not
	noClock bool          // leases never expire by the wall clock (NeverExpire)
}

type lease struct {
	id     int64
	ttl    time.Duration
	expiry time.Time
}

type result struct {
	resp proto.Message
	err  error
}

type node struct {
	name, addr string
	srv        *grpc.Server
}

// Start starts n nodes on 127.0.0.1 with node 0 as the leader.
func Start(n int) (*Cluster, error) {
	c := &Cluster{
		leader:  0,
		term:    1,
		nextID:  FirstLeaseID,
		leases:  make(map[int64]*lease),
		items:   make(map[string]*leasepb.Item),
		results: make(map[uint64]result),
		reqIDs:  make(map[string][]uint64),
		lose:    make(map[string]int),
		streams: make(map[*kaStream]struct{}),
		renews:  make(map[int64]int),
		arrived: make(map[int64]int),
	}
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.Close()
			return nil, err
		}
		nd := &node{name: fmt.Sprintf("node%d", i), addr: lis.Addr().String(), srv: grpc.NewServer()}
		s := &server{c: c, idx: i}
		leasepb.RegisterLeasesServer(nd.srv, s)
		leasepb.RegisterItemsServer(nd.srv, s)
		leasepb.RegisterClusterServer(nd.srv, s)
		c.nodes = append(c.nodes, nd)
		go func() { _ = nd.srv.Serve(lis) }()
	}
	return c, nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.srv.Stop()
	}
}

// Addrs returns the nodes' gRPC addresses, by index.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// Leader returns the leading node's index, or -1.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// SetLeader makes node i the leader (-1: no leader) in a new term. KeepAlive
// streams on nodes that no longer lead end with Unavailable and a LeaderHint,
// as the real server's do.
func (c *Cluster) SetLeader(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i != c.leader {
		c.leader = i
		c.term++
	}
	for s := range c.streams {
		if s.node != i {
			select {
			case s.kill <- c.notLeaderLocked():
			default:
			}
		}
	}
}

// LoseReplies makes the next n calls of method ("Grant", "Revoke", "Attach",
// "Detach") apply on the leader and then fail with Unavailable (no hint), as
// when a leader applies an entry and loses leadership before replying.
func (c *Cluster) LoseReplies(method string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lose[method] = n
}

// RequestIDs returns the request IDs the leader received for method, in order.
func (c *Cluster) RequestIDs(method string) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqIDs[method])
}

// StallRenewals makes the leader hold renewals unanswered (as a leader that
// cannot reach its followers to verify its leadership does); false answers
// the held ones, in order, on streams that are still open.
func (c *Cluster) StallRenewals(stall bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case stall && c.stall == nil:
		c.stall = make(chan struct{})
	case !stall && c.stall != nil:
		close(c.stall)
		c.stall = nil
	}
}

// stalled returns a channel to wait on before answering a renewal, or nil.
func (c *Cluster) stalled() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stall
}

// Renewals returns how many renewals of lease id were acknowledged.
func (c *Cluster) Renewals(id int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.renews[id]
}

// Arrived returns how many renewals of lease id reached the leader, including
// ones held unanswered by StallRenewals.
func (c *Cluster) Arrived(id int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arrived[id]
}

// Expire deletes lease id and its items as if it had expired.
func (c *Cluster) Expire(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLeaseLocked(id)
}

// NeverExpire stops expiry by the wall clock: from now on leases end only by
// Revoke or Expire, so that a test counting them (a fuzz target) sees only
// what its own requests do, whatever TTLs they asked for and however long
// they took.
func (c *Cluster) NeverExpire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noClock = true
}

// LeaseCount returns how many leases exist.
func (c *Cluster) LeaseCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	return len(c.leases)
}

// Status returns node i's status, as its Cluster.Status RPC would.
func (c *Cluster) Status(i int) (*leasepb.StatusResponse, error) {
	if i < 0 || i >= len(c.nodes) {
		return nil, ErrBadNode
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &leasepb.StatusResponse{
		Name:         c.nodes[i].name,
		Role:         "follower",
		Term:         c.term,
		AppliedIndex: c.index,
		CommitIndex:  c.index,
		LastIndex:    c.index,
	}
	if c.leader == i {
		st.Role = "leader"
	}
	if c.leader >= 0 {
		st.Leader = c.nodes[c.leader].name
		st.LeaderAddress = c.nodes[c.leader].addr
	}
	return st, nil
}

// notLeaderLocked is the error a non-leader answers with.
func (c *Cluster) notLeaderLocked() error {
	hint := &leasepb.LeaderHint{}
	if c.leader >= 0 {
		hint.Id, hint.Address = c.nodes[c.leader].name, c.nodes[c.leader].addr
	}
	st, err := status.New(codes.Unavailable, "not the leader").WithDetails(hint)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}

// expireLocked deletes leases whose expiry passed (lazily, on access).
func (c *Cluster) expireLocked() {
	if c.noClock {
		return
	}
	now := time.Now()
	for id, l := range c.leases {
		if !now.Before(l.expiry) {
			c.deleteLeaseLocked(id)
		}
	}
}

func (c *Cluster) deleteLeaseLocked(id int64) bool {
	if _, ok := c.leases[id]; !ok {
		return false
	}
	delete(c.leases, id)
	for k, it := range c.items {
		if it.GetLeaseId() == id {
			delete(c.items, k)
		}
	}
	return true
}

// keysLocked returns lease id's item keys, sorted.
func (c *Cluster) keysLocked(id int64) []string {
	var keys []string
	for k, it := range c.items {
		if it.GetLeaseId() == id {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// mutate runs a mutation on the leader with request-ID deduplication and the
// injected reply losses.
func (c *Cluster) mutate(idx int, method string, reqID uint64, apply func() (proto.Message, error)) (proto.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != idx {
		return nil, c.notLeaderLocked()
	}
	c.reqIDs[method] = append(c.reqIDs[method], reqID)
	c.expireLocked()
	r, seen := c.results[reqID]
	if !seen || reqID == 0 {
		resp, err := apply()
		r = result{resp: resp, err: err}
		if reqID != 0 {
			c.results[reqID] = r
		}
	}
	if c.lose[method] > 0 {
		c.lose[method]--
		return nil, status.Error(codes.Unavailable, "leadership lost; outcome unknown")
	}
	return r.resp, r.err
}

// read runs a linearizable read on the leader.
func (c *Cluster) read(idx int, f func() (proto.Message, error)) (proto.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != idx {
		return nil, c.notLeaderLocked()
	}
	c.expireLocked()
	return f()
}
