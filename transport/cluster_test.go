package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// listFSM records every applied command; a snapshot is the list, one per line.
type listFSM struct {
	mu       sync.Mutex // guards entries
	entries  []string
	restores atomic.Int32
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &listSnapshot{entries: slices.Clone(f.entries)}, nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries []string
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		entries = append(entries, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.entries = entries
	f.mu.Unlock()
	f.restores.Add(1)
	return nil
}

func (f *listFSM) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries)
}

type listSnapshot struct{ entries []string }

func (s *listSnapshot) Persist(sink raft.SnapshotSink) error {
	var buf bytes.Buffer
	for _, e := range s.entries {
		buf.WriteString(e)
		buf.WriteByte('\n')
	}
	if _, err := sink.Write(buf.Bytes()); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *listSnapshot) Release() {}

// raftNode is one member of the test cluster.
type raftNode struct {
	id   raft.ServerID
	net  *node
	raft *raft.Raft
	fsm  *listFSM
	logs *raft.InmemStore
}

func testRaftConfig(id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	// Fast enough for a test, slow enough for a loaded two-core machine
	// running it under -race.
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 250 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	// Snapshot often and keep few logs, so that a node that misses a few
	// hundred entries can only catch up by InstallSnapshot.
	c.SnapshotThreshold = 50
	c.SnapshotInterval = 100 * time.Millisecond
	c.TrailingLogs = 10
	c.Logger = hclog.New(&hclog.LoggerOptions{Name: string(id), Level: hclog.Error, Output: io.Discard})
	if testing.Verbose() {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: string(id), Level: hclog.Warn})
	}
	return c
}

// startRaftNode starts a node with empty in-memory stores on addr ("" for
// any port).
func startRaftNode(t *testing.T, id raft.ServerID, addr string) *raftNode {
	t.Helper()
	return startRaftNodeConfig(t, id, addr, Config{Timeout: testTimeout, CheckCommand: AnyCommand})
}

// startRaftNodeConfig is startRaftNode with the transport's cfg.
func startRaftNodeConfig(t *testing.T, id raft.ServerID, addr string, cfg Config) *raftNode {
	t.Helper()
	n := &raftNode{id: id, net: newNodeConfig(t, addr, cfg), fsm: &listFSM{}, logs: raft.NewInmemStore()}
	r, err := raft.NewRaft(testRaftConfig(id), n.fsm, n.logs, raft.NewInmemStore(),
		raft.NewInmemSnapshotStore(), n.net.trans)
	if err != nil {
		t.Fatalf("NewRaft %s: %v", id, err)
	}
	n.raft = r
	t.Cleanup(n.stop)
	return n
}

// stop shuts raft down (which closes the transport), then the server.
func (n *raftNode) stop() {
	if n.raft != nil {
		_ = n.raft.Shutdown().Error()
	}
	n.net.stop()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitLeader(t *testing.T, nodes []*raftNode) *raftNode {
	t.Helper()
	var leader *raftNode
	waitFor(t, 20*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func applyN(t *testing.T, r *raft.Raft, from, count int) {
	t.Helper()
	futures := make([]raft.ApplyFuture, 0, count)
	for i := from; i < from+count; i++ {
		futures = append(futures, r.Apply([]byte(fmt.Sprintf("cmd-%04d", i)), 10*time.Second))
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatalf("apply %d: %v", from+i, err)
		}
	}
}

func waitConverged(t *testing.T, nodes []*raftNode, want int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("all FSMs to hold %d equal entries", want), func() bool {
		first := nodes[0].fsm.snapshot()
		if len(first) != want {
			return false
		}
		for _, n := range nodes[1:] {
			if !slices.Equal(n.fsm.snapshot(), first) {
				return false
			}
		}
		return true
	})
}

// TestRaftCluster runs three hashicorp/raft nodes over the transport: they
// elect a leader and replicate 200 commands; then a node that missed
// entries the leader has compacted away catches up through InstallSnapshot.
func TestRaftCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node raft cluster")
	}
	nodes := make([]*raftNode, 3)
	var servers []raft.Server
	for i := range nodes {
		nodes[i] = startRaftNode(t, raft.ServerID(fmt.Sprintf("node%d", i)), "")
		servers = append(servers, raft.Server{ID: nodes[i].id, Address: nodes[i].net.trans.LocalAddr()})
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}

	leader := waitLeader(t, nodes)
	applyN(t, leader.raft, 0, 200)
	waitConverged(t, nodes, 200)
	want := nodes[0].fsm.snapshot()
	for i, e := range want {
		if e != fmt.Sprintf("cmd-%04d", i) {
			t.Fatalf("entry %d is %q: commands applied out of order", i, e)
		}
	}

	// Take a follower down and let the others move on far past it.
	var lagging *raftNode
	var rest []*raftNode
	for _, n := range nodes {
		if n != leader && lagging == nil {
			lagging = n
		} else {
			rest = append(rest, n)
		}
	}
	addr := string(lagging.net.trans.LocalAddr())
	lagging.stop()
	applyN(t, leader.raft, 200, 200)
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatalf("leader snapshot: %v", err)
	}
	first, err := leader.logs.FirstIndex()
	if err != nil {
		t.Fatalf("leader log: %v", err)
	}
	if first <= 1 {
		t.Fatalf("leader still holds its whole log (first index %d): the test would not need a snapshot", first)
	}

	// The node comes back with empty stores on its old address: only an
	// InstallSnapshot can bring it up to date.
	back := startRaftNode(t, lagging.id, addr)
	waitConverged(t, append(rest, back), 400)
	if back.fsm.restores.Load() == 0 {
		t.Fatalf("the returning node caught up without restoring a snapshot")
	}
	// And it keeps following afterwards.
	applyN(t, leader.raft, 400, 10)
	waitConverged(t, append(rest, back), 410)
}
