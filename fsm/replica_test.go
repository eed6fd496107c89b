package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/limits"
	"github.com/leasecluster/leasecluster/snapshot"
)

// Owners and actors of the workload: leases without an owner and owned by
// two identities; callers without an identity, with each of them, and an
// admin (rule 10).
var (
	workloadOwners = []string{"", "alice", "bob"}
	workloadActors = []Actor{{}, {Identity: "alice"}, {Identity: "bob"}, {Identity: "root", Admin: true}}
)

// workload returns a reproducible log: grants (with and without owners),
// attaches, re-attaches, detaches, revokes (client and expiry), by owners,
// other identities and admins, checkpoints, retries of earlier requests,
// commands that fail, and configuration entries.
func workload(t testing.TB, seed uint64, count int) []*raft.Log {
	r := rand.New(rand.NewPCG(seed, 1))
	m := must(t)
	var logs []*raft.Log
	var sent [][]byte // earlier commands, to retry
	for i := 1; i <= count; i++ {
		id := lessor.LeaseID(r.IntN(20) + 1)
		key := fmt.Sprintf("item/%d", r.IntN(30))
		req := uint64(i)
		if r.IntN(4) == 0 {
			req = 0
		}
		owner := workloadOwners[r.IntN(len(workloadOwners))]
		actor := workloadActors[r.IntN(len(workloadActors))]
		var data []byte
		switch op := r.IntN(10); {
		case op < 2:
			data = m(EncodeGrant(req, id, int64(r.IntN(10000)+1), owner))
		case op < 5:
			data = m(EncodeAttach(req, id, key, fmt.Sprint(r.Uint32()), actor))
		case op == 5:
			data = m(EncodeDetach(req, id, key, actor))
		case op == 6:
			data = m(EncodeRevoke(req, []lessor.LeaseID{id, id + 20}, r.IntN(2) == 0, actor))
		case op == 7:
			data = m(EncodeCheckpoint([]lessor.Checkpoint{{ID: id, Remaining: int64(r.IntN(3)) * 500, Gen: uint64(r.IntN(2))}}))
		case op == 8 && len(sent) > 0:
			data = sent[r.IntN(len(sent))] // a client retry
		default:
			logs = append(logs, &raft.Log{Type: raft.LogConfiguration, Data: []byte("cfg")})
			continue
		}
		sent = append(sent, data)
		logs = append(logs, &raft.Log{Type: raft.LogCommand, Data: data})
	}
	for i, l := range logs {
		l.Index, l.Term = uint64(i+1), 1
	}
	return logs
}

func TestDeterminism(t *testing.T) {
	logs := workload(t, 1, 600)
	a, b, c := newNode(t, 50), newNode(t, 50), newNode(t, 50)
	var resA []interface{}
	for _, l := range logs {
		resA = append(resA, a.f.Apply(l))
	}
	// b applies in batches of varying size, as raft's BatchingFSM does.
	var resB []interface{}
	for i := 0; i < len(logs); {
		j := min(len(logs), i+1+i%7)
		resB = append(resB, b.f.ApplyBatch(logs[i:j])...)
		i = j
	}
	// c applies the first half, is restored from a snapshot of itself into a
	// fresh FSM, which applies the rest.
	half := len(logs) / 2
	c.f.ApplyBatch(logs[:half])
	c2 := newNode(t, 50)
	if err := c2.f.Restore(io.NopCloser(bytes.NewReader(c.snapshotBytes()))); err != nil {
		t.Fatal(err)
	}
	c2.f.ApplyBatch(logs[half:])

	if !reflect.DeepEqual(errStrings(resA), errStrings(resB)) {
		t.Fatal("Apply and ApplyBatch returned different results")
	}
	ha := a.f.StateHash()
	for name, h := range map[string]string{"batched": b.f.StateHash(), "restored": c2.f.StateHash()} {
		if h != ha {
			t.Errorf("%s replica's hash %s differs from %s", name, h, ha)
		}
	}
	if a.f.AppliedIndex() != uint64(len(logs)) || c2.f.AppliedIndex() != uint64(len(logs)) {
		t.Errorf("AppliedIndex %d and %d, want %d", a.f.AppliedIndex(), c2.f.AppliedIndex(), len(logs))
	}
	if !reflect.DeepEqual(a.le.State(), c2.le.State()) {
		t.Error("lessor states differ after restore")
	}
	// The workload must have exercised the interesting paths for this to
	// mean anything.
	var ok, failed, denied, owned int
	for _, r := range resA {
		if r, isRes := r.(*Result); isRes {
			if r.Err == nil {
				ok++
			} else {
				failed++
			}
			if errors.Is(r.Err, lessor.ErrPermissionDenied) {
				denied++
			}
		}
	}
	for _, l := range a.le.State() {
		if l.Owner != "" && len(l.Keys) > 0 {
			owned++
		}
	}
	if ok < 100 || failed < 50 || denied < 20 || owned == 0 || len(a.le.State()) == 0 || a.f.dedupe.len() != 50 {
		t.Fatalf("weak workload: %d ok, %d failed (%d denied), %d leases (%d owned with items), %d remembered",
			ok, failed, denied, len(a.le.State()), owned, a.f.dedupe.len())
	}

	// A different log gives a different hash.
	d := newNode(t, 50)
	d.f.ApplyBatch(workload(t, 2, 600))
	if d.f.StateHash() == ha {
		t.Fatal("a different command sequence gave the same hash")
	}
}

// errStrings makes results comparable: wrapped errors compare by message.
func errStrings(rs []interface{}) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		if r, ok := r.(*Result); ok {
			out[i] = fmt.Sprintf("%v %d %d %+v", r.Err, r.LeaseID, r.TTL, r.Item)
		}
	}
	return out
}

func TestDedupe(t *testing.T) {
	n := newNode(t, 3)
	m := must(t)
	grant := m(EncodeGrant(1, 10, 5000, ""))
	first := n.ok(grant)
	// A retry after ErrLeadershipLost: same result, no second grant.
	again := n.apply(grant)
	if !reflect.DeepEqual(again, first) {
		t.Fatalf("retry returned %+v, first %+v", again, first)
	}
	attach := m(EncodeAttach(2, 10, "k", "v", Actor{}))
	att := n.ok(attach)
	n.ok(m(EncodeAttach(3, 10, "k", "v2", Actor{}))) // a different request
	before := n.f.StateHash()
	if res := n.apply(attach); !reflect.DeepEqual(res, att) {
		t.Fatalf("attach retry returned %+v, first %+v", res, att)
	}
	if it, _ := n.f.Item("k"); it.Value != "v2" {
		t.Fatalf("the attach retry was re-applied: value %q", it.Value)
	}
	if n.f.StateHash() != before {
		t.Fatal("a deduplicated retry changed the state")
	}
	// A request ID reused for another command is refused.
	n.refused(m(EncodeRevoke(1, []lessor.LeaseID{10}, false, Actor{})), ErrRequestIDReused)

	// A failed command is not remembered: its retry runs again.
	lost := m(EncodeAttach(4, 11, "j", "v", Actor{}))
	n.refused(lost, lessor.ErrLeaseNotFound)
	n.ok(m(EncodeGrant(0, 11, 5000, "")))
	if res := n.ok(lost); res.Item.Revision != n.idx {
		t.Fatalf("retry of a failed attach: %+v", res)
	}

	// The window holds 3 requests: 2, 3 and 4 are remembered, 1 was
	// evicted, so retrying it now applies it again (and fails).
	if got := n.f.dedupe.entries(); len(got) != 3 || got[0].RequestID != 2 || got[2].RequestID != 4 {
		t.Fatalf("window holds %+v", got)
	}
	if res := n.apply(grant); !errors.Is(res.Err, lessor.ErrLeaseExists) {
		t.Fatalf("evicted retry: %+v, want ErrLeaseExists", res)
	}
	if res := n.apply(attach); res.Err != nil || res.Item.Revision != att.Item.Revision {
		t.Fatalf("remembered attach retry: %+v", res)
	}

	// The window is part of snapshots.
	n2 := newNode(t, 3)
	if err := n2.f.Restore(io.NopCloser(bytes.NewReader(n.snapshotBytes()))); err != nil {
		t.Fatal(err)
	}
	n2.idx = n.idx
	if res := n2.apply(attach); !reflect.DeepEqual(res, att) {
		t.Fatalf("restored FSM's retry returned %+v, want %+v", res, att)
	}
	// A smaller window keeps the newest entries of a larger snapshot.
	n3 := newNode(t, 1)
	if err := n3.f.Restore(io.NopCloser(bytes.NewReader(n.snapshotBytes()))); err != nil {
		t.Fatal(err)
	}
	if got := n3.f.dedupe.entries(); len(got) != 1 || got[0].RequestID != 4 {
		t.Fatalf("window of 1 after restore holds %+v", got)
	}
}

func TestDedupeWindowLong(t *testing.T) {
	// Many evictions exercise the compaction of the order slice.
	n := newNode(t, 10)
	for i := uint64(1); i <= 5000; i++ {
		n.ok(must(t)(EncodeGrant(i, lessor.LeaseID(i), 5000, "")))
	}
	got := n.f.dedupe.entries()
	if len(got) != 10 || got[0].RequestID != 4991 || got[9].RequestID != 5000 || len(n.f.dedupe.byID) != 10 {
		t.Fatalf("window holds %d entries from %d", len(got), got[0].RequestID)
	}
	if cap(n.f.dedupe.order) > 4096 {
		t.Fatalf("order slice grew to %d", cap(n.f.dedupe.order))
	}
}

func TestSnapshotRestore(t *testing.T) {
	a := newNode(t, 0)
	a.f.ApplyBatch(workload(t, 3, 300))
	data := a.snapshotBytes()
	sum, err := snapshot.Inspect(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Index != 300 || sum.Index != a.f.AppliedIndex() || sum.Term != 1 || sum.Leases != len(a.le.State()) || sum.Leases == 0 {
		t.Fatalf("snapshot summary %+v, applied %d", sum, a.f.AppliedIndex())
	}
	b := newNode(t, 0)
	if err := b.f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if b.f.StateHash() != a.f.StateHash() || b.f.AppliedIndex() != a.f.AppliedIndex() {
		t.Fatal("restored FSM differs")
	}
	for _, l := range a.le.State() {
		for _, k := range l.Keys {
			ia, _ := a.f.Item(k)
			ib, ok := b.f.Item(k)
			if !ok || ia != ib {
				t.Fatalf("item %q: %+v vs %+v", k, ia, ib)
			}
		}
	}
	// Revokes after a restore still delete items: Restore installed the
	// range deleter.
	l := a.le.State()[0]
	if len(l.Keys) == 0 {
		for _, s := range a.le.State() {
			if len(s.Keys) > 0 {
				l = s
			}
		}
	}
	b.idx = a.f.AppliedIndex()
	b.ok(must(t)(EncodeRevoke(0, []lessor.LeaseID{l.ID}, false, Actor{Identity: l.Owner}))) // the owner (or nobody, for no owner)
	for _, k := range l.Keys {
		if _, ok := b.f.Item(k); ok {
			t.Fatalf("item %q survived a revoke after restore", k)
		}
	}
}

func TestRestoreCorruptKeepsState(t *testing.T) {
	a := newNode(t, 0)
	a.f.ApplyBatch(workload(t, 4, 200))
	good := a.snapshotBytes()

	b := newNode(t, 0)
	b.f.ApplyBatch(workload(t, 5, 100))
	hash, index := b.f.StateHash(), b.f.AppliedIndex()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)-5],
		"flipped":   flipped,
		"empty":     nil,
	} {
		if err := b.f.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
			t.Fatalf("%s snapshot restored", name)
		}
		if b.f.StateHash() != hash || b.f.AppliedIndex() != index {
			t.Fatalf("a failed restore (%s) changed the state", name)
		}
	}
	// An intact snapshot holding what no command could create is refused
	// by the FSM's own checks.
	var buf bytes.Buffer
	long := string(bytes.Repeat([]byte("k"), limits.MaxKeyBytes+1))
	err := snapshot.Write(&buf, &snapshot.Snapshot{
		Index:  9,
		Leases: []lessor.LeaseState{{ID: 1, TTL: 5000, Keys: []string{long}}},
		Items:  []snapshot.Item{{Key: long, LeaseID: 1, Revision: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.f.Restore(io.NopCloser(&buf)); !errors.Is(err, ErrKeyInvalid) {
		t.Fatalf("restore of an over-long key: %v", err)
	}
	if b.f.StateHash() != hash {
		t.Fatal("refused restore changed the state")
	}
}

func TestPersistCancelsOnError(t *testing.T) {
	n := newNode(t, 0)
	n.ok(must(t)(EncodeGrant(0, 1, 5000, "")))
	snap, err := n.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &failSink{}
	if err := snap.Persist(sink); err == nil || !sink.cancelled || sink.closed {
		t.Fatalf("Persist on a failing sink: err %v, cancelled %v, closed %v", err, sink.cancelled, sink.closed)
	}
}

type failSink struct{ memSink }

func (*failSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestConcurrentReads runs the readers that other goroutines use while
// entries apply; run with -race.
func TestConcurrentReads(t *testing.T) {
	n := newNode(t, 0)
	logs := workload(t, 6, 400)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = n.f.StateHash()
				_, _ = n.f.Item("item/1")
				_ = n.f.AppliedIndex()
			}
		})
	}
	for i := 0; i < len(logs); i += 10 {
		n.f.ApplyBatch(logs[i:min(i+10, len(logs))])
	}
	close(stop)
	wg.Wait()
	if n.f.AppliedIndex() != uint64(len(logs)) {
		t.Fatalf("AppliedIndex = %d", n.f.AppliedIndex())
	}
}

// TestStateHashCoversState checks that each part of the replicated state
// feeds the hash: item values, checkpointed remainders and the dedupe window.
func TestStateHashCoversState(t *testing.T) {
	m := must(t)
	base := [][]byte{m(EncodeGrant(0, 1, 5000, "")), m(EncodeAttach(0, 1, "k", "v", Actor{}))}
	variants := map[string][]byte{
		"nothing":    nil,
		"value":      m(EncodeAttach(0, 1, "k", "w", Actor{})),
		"checkpoint": m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 10}})),
		"dedupe":     m(EncodeAttach(9, 1, "k", "v", Actor{})), // same effect, but remembered
	}
	seen := map[string]string{}
	for name, extra := range variants {
		n := newNode(t, 0)
		for _, b := range base {
			n.ok(b)
		}
		if extra != nil {
			n.ok(extra)
		} else {
			n.f.Apply(&raft.Log{Index: 3, Type: raft.LogNoop})
		}
		h := n.f.StateHash()
		if other, dup := seen[h]; dup {
			t.Fatalf("%s and %s give the same hash", name, other)
		}
		seen[h] = name
	}
}
