package server

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/internal/proctest"
	"github.com/leasecluster/leasecluster/transport"
)

// Rule 12: a node on an empty data dir becomes a voter again only through
// the cluster.

// TestWipedVoterWithInitialClusterJoins: a voter whose data dir is lost and
// that starts again with only --initial-cluster finds the cluster running
// and joins it as a replacement (removed, added as a non-voter, promoted
// once caught up) instead of bootstrapping, which would have made it a
// voter again at once without the votes and entries it had promised. The
// leader's configuration changes (it would not, had the node bootstrapped)
// and the node ends a caught-up voter holding what was granted before.
func TestWipedVoterWithInitialClusterJoins(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	li, ld := c.leader()
	id, _, err := ld.ops.grant(ctxT(t), 0, time.Hour.Milliseconds(), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.converge()
	victim := (li + 1) % 3
	cfg := c.cfgs[victim]
	c.kill(victim)
	cfg.DataDir = t.TempDir() // the data dir is lost; the flags are the same
	logs := &proctest.Buffer{}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.Name, Level: hclog.Info, Output: io.MultiWriter(logs, testWriter{t})})
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.setNode(victim, n)
	// The old voter of its name is replaced (removed, added as a non-voter,
	// promoted): the node's join says so once it is a voter again. Had it
	// bootstrapped, it would have said that instead, and never joined.
	if err := proctest.Eventually(20*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "joined the cluster: this node is a voter") {
			return errors.New("the node has not joined")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "bootstrapping a new cluster") {
		t.Fatal("the node bootstrapped")
	}
	c.converge()
	if _, err := n.reader.timeToLive(ctxT(t), id, false, true); err != nil {
		t.Fatalf("the replaced node lacks the lease granted before: %v", err)
	}
}

// TestJoiningNodeHoldsVotes: a node that started on an empty data dir and
// joins refuses vote requests before raft sees them (rule 12) until the
// cluster has made it a voter: hashicorp/raft would grant one, with an empty
// configuration or with the old ones it catches up on. A voter answers them,
// and so does the joined node once it is a voter.
func TestJoiningNodeHoldsVotes(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	joining := c.node(c.addNode("n4", "", []string{"127.0.0.1:1"})) // nobody there: it never joins
	trans, err := transport.New(transport.Config{LocalAddr: "127.0.0.1:9", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer trans.Close()
	ask := func(n *Node) error {
		args := raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n9"), Addr: []byte("127.0.0.1:9")},
			Term: 1, LastLogIndex: 1, LastLogTerm: 1}
		var out raft.RequestVoteResponse
		if err := trans.RequestVote(raft.ServerID(n.Name()), raft.ServerAddress(n.Addr()), &args, &out); err != nil {
			return err
		}
		if out.Granted {
			return errors.New("granted")
		}
		return nil
	}
	if err := ask(joining); !strings.Contains(fmt.Sprint(err), "does not vote") {
		t.Fatalf("a vote request to a node outside any configuration: %v, want it refused", err)
	}
	if err := ask(ld); err != nil {
		t.Fatalf("a stale vote request to the leader: %v, want an answer (not granted)", err)
	}
	pre := raft.RequestPreVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n9"), Addr: []byte("127.0.0.1:9")}, Term: 1}
	var preOut raft.RequestPreVoteResponse
	if err := trans.RequestPreVote("n4", raft.ServerAddress(joining.Addr()), &pre, &preOut); !strings.Contains(fmt.Sprint(err), "does not vote") {
		t.Fatalf("a pre-vote request to a node outside any configuration: %v, want it refused", err)
	}
	joined := c.node(c.addNode("n5", "", []string{ld.Addr()}))
	c.awaitSuffrage("n5", "voter", 20*time.Second)
	if err := proctest.Eventually(10*time.Second, 20*time.Millisecond, func() error { return ask(joined) }); err != nil {
		t.Fatalf("the joined voter still refuses vote requests: %v", err)
	}
}
