package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/lessor"
)

// flagNode is one replica started with its own flags: its lessor's config
// and whether it is the primary. (The dedupe window was a setting too; it is
// now the constant DedupeWindow.)
type flagNode struct {
	name    string
	cfg     lessor.Config
	primary bool
	f       *FSM
	le      lessor.Lessor
}

// skewClock is a node whose clock runs ahead of the others'.
type skewClock struct{ d time.Duration }

func (c skewClock) Now() time.Time { return time.Now().Add(c.d) }

// step is one entry of the shared log, or (snapshot) a snapshot that every
// node restores, each from the next node's copy, as raft's InstallSnapshot
// would between replicas.
type step struct {
	name     string
	data     []byte
	snapshot bool
}

// flagLog is what a leader might log during a rolling change of --min-ttl
// and --max-ttl: TTLs below one node's minimum and above another's maximum,
// attaches, checkpoints, a retry, revokes, an owned lease and refusals of
// other identities (whose admin flag is logged, never a node's), a snapshot
// and more after it.
func flagLog(t testing.TB) []step {
	m := must(t)
	ceiling := lessor.TTLCeiling.Milliseconds()
	return []step{
		{name: "grant 1000 ms (below a 1.5 s and a 5 s minimum)", data: m(EncodeGrant(1, 1, 1000, ""))},
		{name: "grant 2 h (above a 1 h maximum)", data: m(EncodeGrant(2, 2, (2 * time.Hour).Milliseconds(), ""))},
		{name: "grant 40 days (above the default maximum)", data: m(EncodeGrant(3, 3, (40 * 24 * time.Hour).Milliseconds(), ""))},
		{name: "grant 1 ms", data: m(EncodeGrant(4, 4, 1, ""))},
		{name: "attach a to 1", data: m(EncodeAttach(5, 1, "a", "v1", Actor{}))},
		{name: "attach b to 2", data: m(EncodeAttach(6, 2, "b", "v2", Actor{}))},
		{name: "attach c to 3", data: m(EncodeAttach(7, 3, "c", "v3", Actor{}))},
		{name: "checkpoint 1 at 700 ms", data: m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 700}}))},
		{name: "checkpoint reset of 2", data: m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 2}}))},
		{name: "retry of grant 1", data: m(EncodeGrant(1, 1, 1000, ""))},
		{name: "revoke 4", data: m(EncodeRevoke(8, []lessor.LeaseID{4}, false, Actor{}))},
		{name: "snapshot and restore", snapshot: true},
		{name: "retry of grant 2 after the restore", data: m(EncodeGrant(2, 2, (2 * time.Hour).Milliseconds(), ""))},
		{name: "grant the ceiling", data: m(EncodeGrant(9, 5, ceiling, ""))},
		{name: "grant above the ceiling", data: raw(t, rawGrant(6, ceiling+1))},
		{name: "checkpoint 3 at 20 days", data: m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 3, Remaining: (20 * 24 * time.Hour).Milliseconds()}}))},
		{name: "expiry revoke of 1 and 99", data: m(EncodeRevoke(0, []lessor.LeaseID{1, 99}, true, Actor{}))},
		{name: "attach d to 5", data: m(EncodeAttach(10, 5, "d", "v4", Actor{}))},
		{name: "grant 7 owned by app1", data: m(EncodeGrant(12, 7, 60000, "app1"))},
		{name: "attach e to 7 by app2 (denied)", data: m(EncodeAttach(13, 7, "e", "v5", Actor{Identity: "app2"}))},
		{name: "attach e to 7 by an admin", data: m(EncodeAttach(14, 7, "e", "v5", Actor{Identity: "ops", Admin: true}))},
		{name: "second snapshot and restore", snapshot: true},
		{name: "grant 2000 ms", data: m(EncodeGrant(11, 6, 2000, ""))},
		{name: "revoke 7 by app2 (denied)", data: m(EncodeRevoke(15, []lessor.LeaseID{7}, false, Actor{Identity: "app2"}))},
		{name: "revoke 7 by app1", data: m(EncodeRevoke(16, []lessor.LeaseID{7}, false, Actor{Identity: "app1"}))},
	}
}

// TestReplicasWithDifferentFlags applies one log on replicas started with
// different --min-ttl, --max-ttl, --revoke-rate, clocks and roles, and
// requires the same results and the same state hash after every entry: the
// replicated state never depends on a node's flags. Each subtest pits one
// difference against the reference node; "all" mixes them.
func TestReplicasWithDifferentFlags(t *testing.T) {
	ref := flagNode{name: "reference"}
	variants := []flagNode{
		{name: "min-ttl 5s", cfg: lessor.Config{MinTTL: 5 * time.Second}},
		{name: "min-ttl 1ms", cfg: lessor.Config{MinTTL: time.Millisecond}},
		{name: "max-ttl 1h", cfg: lessor.Config{MaxTTL: time.Hour}},
		{name: "max-ttl ceiling", cfg: lessor.Config{MaxTTL: lessor.TTLCeiling}},
		{name: "revoke-rate 1", cfg: lessor.Config{RevokeRate: 1, BatchSize: 1}, primary: true},
		{name: "revoke-rate 1e6", cfg: lessor.Config{RevokeRate: 1_000_000}, primary: true},
		{name: "skewed clock", cfg: lessor.Config{Clock: skewClock{time.Hour}}, primary: true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) { checkReplicas(t, []flagNode{ref, v}) })
	}
	t.Run("all", func(t *testing.T) { checkReplicas(t, append([]flagNode{ref}, variants...)) })
}

// checkReplicas applies flagLog on nodes, in a synctest bubble so that
// primaries expire leases in fake time between entries, and fails at the
// first entry after which the nodes' results or hashes differ.
func checkReplicas(t *testing.T, nodes []flagNode) {
	synctest.Test(t, func(t *testing.T) {
		for i := range nodes {
			nodes[i].start(t)
		}
		var idx uint64
		for _, s := range flagLog(t) {
			idx++
			results := make([]string, len(nodes))
			for i := range nodes {
				n := &nodes[i]
				if s.snapshot {
					results[i] = n.restoreFrom(t, &nodes[(i+1)%len(nodes)])
					continue
				}
				r := n.f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: s.data})
				results[i] = errStrings([]interface{}{r})[0]
			}
			for i := range nodes[1:] {
				a, b := &nodes[0], &nodes[i+1]
				if results[i+1] != results[0] {
					t.Fatalf("after %q: %s returned %s, %s returned %s", s.name, a.name, results[0], b.name, results[i+1])
				}
				if ha, hb := a.f.StateHash(), b.f.StateHash(); ha != hb {
					t.Fatalf("after %q: state hashes differ\n%s: %+v\n%s: %+v", s.name, a.name, a.le.State(), b.name, b.le.State())
				}
			}
			// A primary expires its short leases between entries: local
			// timing that must not reach the replicated state.
			time.Sleep(time.Second)
			synctest.Wait()
		}
		// The log's TTLs were applied as logged, on every node.
		for _, n := range nodes {
			for id, want := range map[lessor.LeaseID]int64{2: 7_200_000, 3: 3_456_000_000, 5: lessor.TTLCeiling.Milliseconds(), 6: 2000} {
				if l := n.le.Lookup(id); l == nil || l.TTL() != want {
					t.Fatalf("%s: lease %d is %v, want TTL %d", n.name, id, l, want)
				}
			}
		}
	})
}

func (n *flagNode) start(t *testing.T) {
	t.Helper()
	le, err := lessor.NewLessor(n.cfg)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	t.Cleanup(le.Stop)
	if n.primary {
		le.Promote(time.Second)
	}
	n.le = le
	n.f, err = New(Config{Lessor: le, OnFatal: func(err error) { t.Errorf("%s: fatal: %v", n.name, err) }})
	if err != nil {
		t.Fatal(err)
	}
}

// restoreFrom restores n from a snapshot of from and returns the outcome.
func (n *flagNode) restoreFrom(t *testing.T, from *flagNode) string {
	t.Helper()
	snap, err := from.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(n.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))))
}
