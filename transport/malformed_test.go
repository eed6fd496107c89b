package transport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// clusterState is what a malformed RPC must not change on a node.
type clusterState struct {
	term, lastIndex uint64
	leader          raft.ServerAddress
	entries         []string
}

func stateOf(n *raftNode) clusterState {
	leader, _ := n.raft.LeaderWithID()
	return clusterState{term: n.raft.CurrentTerm(), lastIndex: n.raft.LastIndex(), leader: leader, entries: n.fsm.snapshot()}
}

func rawClient(t *testing.T, addr raft.ServerAddress) leasepb.RaftTransportClient {
	t.Helper()
	cc, err := grpc.NewClient(string(addr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return leasepb.NewRaftTransportClient(cc)
}

func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("%s: got %v, want InvalidArgument", what, err)
	}
}

// TestMalformedRPCsChangeNothing sends each node of a three-node cluster the
// malformed RPCs of issue 20, as a member could: a snapshot with bad
// configuration bytes, votes and appends with term 2^64-1, an entry the FSM
// cannot decode (unary and pipelined), a negative snapshot size. Each gets
// InvalidArgument; no node panics, and the leader, the term, every log and
// every FSM stay as they were. The transports check commands with the
// default, fsm.CheckDecodable, and the cluster goes on replicating real
// commands afterwards.
func TestMalformedRPCsChangeNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node raft cluster")
	}
	nodes := make([]*raftNode, 3)
	var servers []raft.Server
	for i := range nodes {
		nodes[i] = startRaftNodeConfig(t, raft.ServerID(fmt.Sprintf("node%d", i)), "", Config{Timeout: testTimeout})
		servers = append(servers, raft.Server{ID: nodes[i].id, Address: nodes[i].net.trans.LocalAddr()})
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	leader := waitLeader(t, nodes)
	cmd, err := fsm.EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 10, Gen: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.raft.Apply(cmd, 10*time.Second).Error(); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitConverged(t, nodes, 1)
	waitFor(t, 10*time.Second, "every node to know the leader", func() bool {
		for _, n := range nodes {
			if addr, _ := n.raft.LeaderWithID(); addr != leader.net.trans.LocalAddr() {
				return false
			}
		}
		return true
	})
	before := make([]clusterState, len(nodes))
	for i, n := range nodes {
		before[i] = stateOf(n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conf := raft.EncodeConfiguration(raft.Configuration{Servers: servers})
	for i, n := range nodes {
		c := rawClient(t, n.net.trans.LocalAddr())
		term, last := before[i].term, before[i].lastIndex
		// As the leader, or as another member, would address it.
		asLeader := &leasepb.RaftRPCHeader{ProtocolVersion: int64(raft.ProtocolVersionMax), Id: []byte(leader.id), Addr: []byte(leader.net.trans.LocalAddr())}
		other := nodes[(i+1)%len(nodes)]
		asMember := &leasepb.RaftRPCHeader{ProtocolVersion: int64(raft.ProtocolVersionMax), Id: []byte(other.id), Addr: []byte(other.net.trans.LocalAddr())}
		name := func(what string) string { return fmt.Sprintf("%s to %s", what, n.id) }

		snapshot := func(req *leasepb.RaftInstallSnapshotRequest) error {
			stream, err := c.InstallSnapshot(ctx)
			if err != nil {
				return err
			}
			_ = stream.Send(&leasepb.RaftInstallSnapshotChunk{Chunk: &leasepb.RaftInstallSnapshotChunk_Request{Request: req}})
			_, err = stream.CloseAndRecv()
			return err
		}
		wantInvalid(t, name("InstallSnapshot with bad configuration bytes"), snapshot(&leasepb.RaftInstallSnapshotRequest{
			Header: asLeader, SnapshotVersion: 1, Term: term, LastLogIndex: last + 100, LastLogTerm: term,
			Configuration: []byte("not msgpack"), ConfigurationIndex: 1,
		}))
		wantInvalid(t, name("InstallSnapshot of size -1"), snapshot(&leasepb.RaftInstallSnapshotRequest{
			Header: asLeader, SnapshotVersion: 1, Term: term, LastLogIndex: last + 100, LastLogTerm: term,
			Configuration: conf, ConfigurationIndex: 1, Size: -1,
		}))

		_, err := c.RequestVote(ctx, &leasepb.RaftRequestVoteRequest{
			Header: asMember, Term: math.MaxUint64, Candidate: asMember.Addr,
			LastLogIndex: math.MaxInt64, LastLogTerm: math.MaxUint64, LeadershipTransfer: true,
		})
		wantInvalid(t, name("RequestVote with term 2^64-1"), err)
		_, err = c.RequestPreVote(ctx, &leasepb.RaftRequestPreVoteRequest{Header: asMember, Term: math.MaxUint64})
		wantInvalid(t, name("RequestPreVote with term 2^64-1"), err)
		_, err = c.AppendEntries(ctx, &leasepb.RaftAppendEntriesRequest{Header: asMember, Term: math.MaxUint64, Leader: asMember.Addr})
		wantInvalid(t, name("heartbeat with term 2^64-1"), err)

		// A well-formed append of one entry after the node's last, in the
		// current term and from the current leader, but with a command
		// the FSM cannot decode.
		undecodable := &leasepb.RaftAppendEntriesRequest{
			Header: asLeader, Term: term, Leader: asLeader.Addr, PrevLogEntry: last, PrevLogTerm: term,
			Entries:           []*leasepb.RaftLog{{Index: last + 1, Term: term, Type: uint32(raft.LogCommand), Data: []byte{0xff, 0xff}}},
			LeaderCommitIndex: last + 1,
		}
		_, err = c.AppendEntries(ctx, undecodable)
		wantInvalid(t, name("AppendEntries with an undecodable command"), err)
		stream, err := c.AppendEntriesPipeline(ctx)
		if err != nil {
			t.Fatalf("pipeline: %v", err)
		}
		if err := stream.Send(undecodable); err != nil {
			t.Fatalf("pipeline send: %v", err)
		}
		_, err = stream.Recv()
		wantInvalid(t, name("pipelined AppendEntries with an undecodable command"), err)

		unknown := &leasepb.RaftAppendEntriesRequest{
			Header: asLeader, Term: term, Leader: asLeader.Addr, PrevLogEntry: last, PrevLogTerm: term,
			Entries: []*leasepb.RaftLog{{Index: last + 1, Term: term, Type: 256 + uint32(raft.LogCommand), Data: cmd}},
		}
		_, err = c.AppendEntries(ctx, unknown)
		wantInvalid(t, name("AppendEntries with log type 256"), err)
		_, err = c.TimeoutNow(ctx, &leasepb.RaftTimeoutNowRequest{Header: &leasepb.RaftRPCHeader{ProtocolVersion: 1 << 40}})
		wantInvalid(t, name("TimeoutNow of protocol version 2^40"), err)
	}

	// Three election timeouts: long enough for a node that took the bait to
	// disturb the cluster.
	time.Sleep(1500 * time.Millisecond)
	for i, n := range nodes {
		if after := stateOf(n); after.term != before[i].term || after.lastIndex != before[i].lastIndex ||
			after.leader != before[i].leader || !slices.Equal(after.entries, before[i].entries) {
			t.Errorf("%s changed: %+v, was %+v", n.id, after, before[i])
		}
		if n.fsm.restores.Load() != 0 {
			t.Errorf("%s restored a snapshot", n.id)
		}
	}
	if leader.raft.State() != raft.Leader {
		t.Errorf("%s no longer leads", leader.id)
	}
	if err := leader.raft.Apply(cmd, 10*time.Second).Error(); err != nil {
		t.Fatalf("apply after the RPCs: %v", err)
	}
	waitConverged(t, nodes, 2)
}

// TestAnswerWithAbsurdTermRefused: a peer's answer with a term far above
// this node's fails the RPC instead of reaching raft, which would adopt it.
func TestAnswerWithAbsurdTermRefused(t *testing.T) {
	n1, n2 := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	wait := respond(t, n1.trans, 2, func(_ int, rpc raft.RPC) {
		switch rpc.Command.(type) {
		case *raft.AppendEntriesRequest:
			rpc.Respond(&raft.AppendEntriesResponse{Term: math.MaxUint64}, nil)
		case *raft.RequestVoteRequest:
			rpc.Respond(&raft.RequestVoteResponse{Term: math.MaxUint64, Granted: true}, nil)
		}
	})
	args := testAppendArgs()
	var resp raft.AppendEntriesResponse
	err := n2.trans.AppendEntries("id1", n1.trans.LocalAddr(), &args, &resp)
	if !errors.Is(err, ErrMalformed) || resp.Term != 0 {
		t.Errorf("AppendEntries answered with term 2^64-1: error %v, response %+v", err, resp)
	}
	var vote raft.RequestVoteResponse
	err = n2.trans.RequestVote("id1", n1.trans.LocalAddr(), &raft.RequestVoteRequest{Term: 10}, &vote)
	if !errors.Is(err, ErrMalformed) || vote.Granted {
		t.Errorf("RequestVote answered with term 2^64-1: error %v, response %+v", err, vote)
	}
	wait()
}
