package fsm

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/limits"
)

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a lessor succeeded")
	}
	f, err := New(Config{Lessor: &lessor.FakeLessor{}})
	if err != nil || f.dedupe.max != DedupeWindow {
		t.Fatalf("New: %v, window %v, want %d", err, f, DedupeWindow)
	}
}

func TestGrant(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	// The TTL applies as logged, below the lessor's MinTTL too: raising a
	// short request (rule 4) is the leader's job before it proposes, so
	// that replicas with different flags agree (flags_test.go).
	res := n.ok(m(EncodeGrant(0, 5, 100, "")))
	if res.LeaseID != 5 || res.TTL != 100 {
		t.Fatalf("grant result %+v", res)
	}
	if l := n.le.Lookup(5); l == nil || l.TTL() != 100 {
		t.Fatalf("lessor has %v", l)
	}
	n.refused(m(EncodeGrant(0, 5, 9000, "")), lessor.ErrLeaseExists)
	ceiling := lessor.TTLCeiling.Milliseconds()
	n.ok(m(EncodeGrant(0, 6, ceiling, "")))
	n.refused(raw(t, rawGrant(7, ceiling+1)), lessor.ErrInvalidTTL)
	if _, err := EncodeGrant(0, 7, ceiling+1, ""); !errors.Is(err, lessor.ErrInvalidTTL) {
		t.Fatalf("EncodeGrant(ttl above the ceiling): %v", err)
	}
	// Bad input reaches Apply only from a faulty leader; it is refused
	// there exactly as the encoders refuse it.
	n.refused(raw(t, rawGrant(0, 1000)), lessor.ErrInvalidID)
	n.refused(raw(t, rawGrant(7, -1)), lessor.ErrInvalidTTL)
	if _, err := EncodeGrant(0, -3, 1000, ""); !errors.Is(err, lessor.ErrInvalidID) {
		t.Fatalf("EncodeGrant(id -3): %v", err)
	}
	if _, err := EncodeGrant(0, 3, 0, ""); !errors.Is(err, lessor.ErrInvalidTTL) {
		t.Fatalf("EncodeGrant(ttl 0): %v", err)
	}
}

func TestRevoke(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	n.ok(m(EncodeGrant(0, 1, 5000, "")))
	n.ok(m(EncodeGrant(0, 2, 5000, "")))
	n.ok(m(EncodeAttach(0, 1, "a", "x", Actor{})))
	n.ok(m(EncodeAttach(0, 1, "b", "y", Actor{})))
	n.ok(m(EncodeAttach(0, 2, "c", "z", Actor{})))

	// A client revoke is all-or-nothing.
	n.refused(m(EncodeRevoke(0, []lessor.LeaseID{1, 3}, false, Actor{})), lessor.ErrLeaseNotFound)
	if n.le.Lookup(1) == nil {
		t.Fatal("a failed revoke removed lease 1")
	}
	if _, err := EncodeRevoke(0, nil, false, Actor{}); !errors.Is(err, ErrNoLeases) {
		t.Fatalf("empty revoke: %v", err)
	}
	if _, err := EncodeRevoke(0, []lessor.LeaseID{1, 1}, false, Actor{}); !errors.Is(err, ErrDuplicateLease) {
		t.Fatalf("duplicate revoke: %v", err)
	}
	n.refused(raw(t, &leasepb.Command{Body: &leasepb.Command_Revoke{Revoke: &leasepb.RevokeCmd{}}}), ErrNoLeases)
	n.refused(raw(t, &leasepb.Command{Body: &leasepb.Command_Revoke{Revoke: &leasepb.RevokeCmd{Ids: []int64{2, 0}}}}), lessor.ErrInvalidID)

	// The expiry loop's revoke skips leases that are already gone.
	n.ok(m(EncodeRevoke(0, []lessor.LeaseID{3, 1}, true, Actor{})))
	for _, k := range []string{"a", "b"} {
		if it, ok := n.f.Item(k); ok {
			t.Fatalf("item %q survived the revoke of its lease: %+v", k, it)
		}
		if id := n.le.GetLease(lessor.LeaseItem{Key: k}); id != lessor.NoLease {
			t.Fatalf("GetLease(%q) = %d after revoke", k, id)
		}
	}
	if n.le.Lookup(1) != nil {
		t.Fatal("lease 1 survived")
	}
	if it, ok := n.f.Item("c"); !ok || it.LeaseID != 2 {
		t.Fatalf("item of another lease was touched: %+v %v", it, ok)
	}
	n.ok(m(EncodeRevoke(0, []lessor.LeaseID{2}, false, Actor{})))
	if _, ok := n.f.Item("c"); ok {
		t.Fatal("item c survived")
	}
	n.refused(m(EncodeRevoke(0, []lessor.LeaseID{2}, false, Actor{})), lessor.ErrLeaseNotFound)
}

func TestAttachExclusivityAndRevision(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	n.ok(m(EncodeGrant(0, 1, 5000, "")))
	n.ok(m(EncodeGrant(0, 2, 5000, "")))
	n.refused(m(EncodeAttach(0, 9, "k", "v", Actor{})), lessor.ErrLeaseNotFound)

	res := n.ok(m(EncodeAttach(0, 1, "k", "v1", Actor{})))
	first := n.idx
	want := Item{Key: "k", LeaseID: 1, Value: "v1", Revision: first}
	if res.Item != want {
		t.Fatalf("attach result %+v, want %+v", res.Item, want)
	}
	if it, _ := n.f.Item("k"); it != want {
		t.Fatalf("Item = %+v, want %+v", it, want)
	}
	// Re-attaching to the holder updates the value and keeps the revision.
	res = n.ok(m(EncodeAttach(0, 1, "k", "v2", Actor{})))
	want.Value = "v2"
	if res.Item != want {
		t.Fatalf("re-attach result %+v, want %+v", res.Item, want)
	}
	// Another lease may not take it.
	n.refused(m(EncodeAttach(0, 2, "k", "v3", Actor{})), lessor.ErrItemHeld)
	if it, _ := n.f.Item("k"); it != want {
		t.Fatalf("Item after refused attach = %+v", it)
	}
	// Once released, the next holder gets a larger revision (rule 7).
	n.ok(m(EncodeDetach(0, 1, "k", Actor{})))
	res = n.ok(m(EncodeAttach(0, 2, "k", "v3", Actor{})))
	if res.Item.LeaseID != 2 || res.Item.Revision != n.idx || res.Item.Revision <= first {
		t.Fatalf("new holder's item %+v (first revision %d)", res.Item, first)
	}
	// So does the same lease after a detach: the revision fences the old holding.
	n.ok(m(EncodeDetach(0, 2, "k", Actor{})))
	prev := res.Item.Revision
	res = n.ok(m(EncodeAttach(0, 2, "k", "v4", Actor{})))
	if res.Item.Revision <= prev {
		t.Fatalf("revision %d after detach and re-attach, was %d", res.Item.Revision, prev)
	}
}

func TestItemLimits(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	n.ok(m(EncodeGrant(0, 1, 5000, "")))
	long := strings.Repeat("k", limits.MaxKeyBytes)
	big := strings.Repeat("v", limits.MaxValueBytes)
	n.ok(m(EncodeAttach(0, 1, long, big, Actor{})))
	n.ok(m(EncodeAttach(0, 1, "a/b/ключ", "", Actor{})))
	for name, c := range map[string]struct {
		key, value string
		want       error // from the encoder
		applyWant  error // from Apply of an entry a faulty leader wrote
	}{
		"empty key":   {"", "v", ErrKeyInvalid, ErrKeyInvalid},
		"long key":    {long + "k", "v", ErrKeyInvalid, ErrKeyInvalid},
		"large value": {"k", big + "v", ErrValueTooLarge, ErrValueTooLarge},
		// protobuf strings must be UTF-8, so such an entry is not a
		// Command at all: the node stops rather than guess.
		"non-UTF-8 key":   {"k\xff", "v", ErrKeyInvalid, ErrUndecodable},
		"non-UTF-8 value": {"k", "\xc3", ErrValueInvalid, ErrUndecodable},
	} {
		if _, err := EncodeAttach(0, 1, c.key, c.value, Actor{}); !errors.Is(err, c.want) {
			t.Errorf("EncodeAttach %s: %v, want %v", name, err, c.want)
		}
		if _, err := EncodeDetach(0, 1, c.key, Actor{}); c.want == ErrKeyInvalid && !errors.Is(err, c.want) {
			t.Errorf("EncodeDetach %s: %v", name, err)
		}
		n.fatals = nil
		if len(c.key) < 100 && len(c.value) < 100 {
			n.refused(rawAttachBytes(1, c.key, c.value), c.applyWant)
		} else {
			n.refused(raw(t, rawAttach(1, c.key, c.value)), c.applyWant)
		}
		if fatal := len(n.fatals) > 0; fatal != (c.applyWant == ErrUndecodable) {
			t.Errorf("%s: OnFatal calls %v", name, n.fatals)
		}
	}
}

func TestDetach(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	n.ok(m(EncodeGrant(0, 1, 5000, "")))
	n.ok(m(EncodeGrant(0, 2, 5000, "")))
	n.ok(m(EncodeAttach(0, 1, "k", "v", Actor{})))
	n.refused(m(EncodeDetach(0, 1, "other", Actor{})), lessor.ErrItemNotFound)
	n.refused(m(EncodeDetach(0, 2, "k", Actor{})), lessor.ErrItemHeld)
	n.refused(m(EncodeDetach(0, 3, "k", Actor{})), lessor.ErrLeaseNotFound)
	n.ok(m(EncodeDetach(0, 1, "k", Actor{})))
	if _, ok := n.f.Item("k"); ok {
		t.Fatal("detached item still present")
	}
	if id := n.le.GetLease(lessor.LeaseItem{Key: "k"}); id != lessor.NoLease {
		t.Fatalf("GetLease = %d after detach", id)
	}
	n.refused(m(EncodeDetach(0, 1, "k", Actor{})), lessor.ErrItemNotFound)
}

func TestCheckpoint(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	n.ok(m(EncodeGrant(0, 1, 5000, "")))
	n.ok(m(EncodeGrant(0, 2, 5000, "")))
	state := func(id lessor.LeaseID) lessor.LeaseState {
		for _, s := range n.le.State() {
			if s.ID == id {
				return s
			}
		}
		t.Fatalf("no lease %d", id)
		return lessor.LeaseState{}
	}
	// Unknown leases in a checkpoint batch are skipped (they may have been
	// revoked since the leader computed it).
	n.ok(m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 700}, {ID: 99, Remaining: 5}})))
	if s := state(1); s.Remaining != 700 || s.Gen != 0 {
		t.Fatalf("after checkpoint: %+v", s)
	}
	n.ok(m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 0}})))
	if s := state(1); s.Remaining != 0 || s.Gen != 1 {
		t.Fatalf("after reset: %+v", s)
	}
	before := n.f.StateHash()
	n.ok(m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 300, Gen: 0}})))
	if n.f.StateHash() != before {
		t.Fatal("a stale-generation checkpoint changed the state")
	}
	if _, err := EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: -1}}); !errors.Is(err, lessor.ErrInvalidTTL) {
		t.Fatalf("negative remainder: %v", err)
	}
	// A remainder above the format's TTL ceiling is refused, as on Recover.
	over := lessor.TTLCeiling.Milliseconds() + 1
	if _, err := EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: over}}); !errors.Is(err, lessor.ErrInvalidTTL) {
		t.Fatalf("remainder above the ceiling: %v", err)
	}
	n.refused(raw(t, &leasepb.Command{Body: &leasepb.Command_Checkpoint{Checkpoint: &leasepb.CheckpointCmd{
		Checkpoints: []*leasepb.LeaseCheckpoint{{Id: 2, RemainingMs: over}}}}}), lessor.ErrInvalidTTL)
	// A lease may be named twice (a renewal batch asking for two resets).
	n.ok(m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 2}, {ID: 2}})))
	if s := state(2); s.Gen != 2 {
		t.Fatalf("after two resets: %+v", s)
	}
	if _, err := EncodeCheckpoint(nil); !errors.Is(err, ErrNoLeases) {
		t.Fatalf("empty checkpoint: %v", err)
	}
	n.refused(raw(t, &leasepb.Command{Body: &leasepb.Command_Checkpoint{Checkpoint: &leasepb.CheckpointCmd{
		Checkpoints: []*leasepb.LeaseCheckpoint{{Id: 2, RemainingMs: 10}, {Id: 1, RemainingMs: -5}}}}}), lessor.ErrInvalidTTL)
	if s := state(2); s.Remaining != 0 {
		t.Fatalf("half of a refused checkpoint was applied: %+v", s)
	}
}

func TestUnsupportedVersion(t *testing.T) {
	n := newNode(t, 0)
	for _, v := range []uint32{0, BatchVersion + 1, 1 << 31} {
		cmd := rawGrant(1, 5000)
		b := raw(t, cmd)
		cmd.Version = v
		if v == 0 {
			// raw stamps version 1 on a zero version; write it by hand.
			b = b[2:]
		} else {
			b = raw(t, cmd)
		}
		n.refused(b, ErrUnsupportedVersion)
	}
	if len(n.fatals) != 0 {
		t.Fatalf("an unknown version called OnFatal: %v", n.fatals)
	}
	if n.le.Lookup(1) != nil {
		t.Fatal("a command of an unknown version was applied")
	}
}

func TestUndecodable(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	n.ok(m(EncodeGrant(0, 1, 5000, "")))
	valid := m(EncodeAttach(7, 1, "k", "v", Actor{}))
	withUnknown := protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), valid...), 99, protowire.VarintType), 1)
	bodyless := raw(t, &leasepb.Command{RequestId: 3})
	for name, data := range map[string][]byte{
		"garbage":       {0xff, 0xff, 0xff},
		"truncated":     valid[:len(valid)-1],
		"unknown field": withUnknown,
		"no body":       bodyless,
	} {
		n.fatals = nil
		n.refused(data, ErrUndecodable)
		if len(n.fatals) != 1 {
			t.Fatalf("%s: OnFatal called %d times", name, len(n.fatals))
		}
		if !errors.Is(n.fatals[0], ErrUndecodable) || !strings.Contains(n.fatals[0].Error(), "index ") {
			t.Fatalf("%s: OnFatal got %v, want an ErrUndecodable naming the index", name, n.fatals[0])
		}
	}
	if _, ok := n.f.Item("k"); ok {
		t.Fatal("part of an undecodable entry was applied")
	}
}

func TestNonCommandEntries(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	before := n.f.StateHash()
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogConfiguration, Data: []byte{1, 2, 3}},
		{Index: 2, Type: raft.LogCommand, Data: m(EncodeGrant(0, 1, 5000, ""))},
		{Index: 3, Type: raft.LogNoop},
	}
	out := n.f.ApplyBatch(logs)
	if len(out) != 3 || out[0] != nil || out[2] != nil {
		t.Fatalf("ApplyBatch = %#v", out)
	}
	if res, ok := out[1].(*Result); !ok || res.Err != nil || res.LeaseID != 1 {
		t.Fatalf("command result %#v", out[1])
	}
	if n.f.AppliedIndex() != 3 {
		t.Fatalf("AppliedIndex = %d, want 3", n.f.AppliedIndex())
	}
	if n.f.StateHash() == before {
		t.Fatal("grant did not change the hash")
	}
	if len(n.fatals) != 0 {
		t.Fatalf("configuration entry treated as undecodable: %v", n.fatals)
	}
}

// A batch entry applies its commands in order, each with its own result and
// deduplication, exactly as if each had an entry of its own.
func TestBatch(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	single := newNode(t, 0) // the same commands, one entry each
	cmds := [][]byte{
		m(EncodeGrant(11, 1, 5000, "")),
		m(EncodeGrant(12, 2, 5000, "")),
		m(EncodeGrant(0, 1, 9000, "")), // already exists: fails alone
		m(EncodeRevoke(13, []lessor.LeaseID{2}, false, Actor{})),
		m(EncodeGrant(11, 1, 5000, "")), // a retry of request 11 in the same entry: replayed
		m(EncodeRevoke(0, []lessor.LeaseID{7}, false, Actor{})),
	}
	res := n.ok(m(EncodeBatch(cmds)))
	if len(res.Batch) != len(cmds) {
		t.Fatalf("%d results for %d commands", len(res.Batch), len(cmds))
	}
	for i, c := range cmds {
		want := single.apply(c)
		got := res.Batch[i]
		if got.LeaseID != want.LeaseID || got.TTL != want.TTL || (got.Err == nil) != (want.Err == nil) {
			t.Errorf("command %d: batched %+v, alone %+v", i, got, want)
		}
	}
	if !errors.Is(res.Batch[2].Err, lessor.ErrLeaseExists) || !errors.Is(res.Batch[5].Err, lessor.ErrLeaseNotFound) {
		t.Fatalf("errors %v, %v", res.Batch[2].Err, res.Batch[5].Err)
	}
	if n.f.StateHash() != single.f.StateHash() {
		t.Fatal("a batch left a different state than its commands one entry each")
	}
	// Request 12 was remembered: a later retry in an entry of its own replays.
	if r := n.ok(m(EncodeGrant(12, 2, 5000, ""))); r.LeaseID != 2 || n.le.Lookup(2) != nil {
		t.Fatalf("retry of a batched grant: %+v, lease 2 %v", r, n.le.Lookup(2))
	}
}

// Only grants and client revokes share an entry: an attach's fencing token
// is the entry's index, which two holders of one key must not share. A
// refused command fails alone; a batch inside a batch is refused the same way.
func TestBatchRefuses(t *testing.T) {
	n := newNode(t, 0)
	m := must(t)
	n.ok(m(EncodeGrant(0, 1, 5000, "")))
	inner := m(EncodeBatch([][]byte{m(EncodeGrant(0, 3, 5000, ""))}))
	res := n.ok(m(EncodeBatch([][]byte{
		m(EncodeAttach(0, 1, "k", "v", Actor{})),
		m(EncodeRevoke(0, []lessor.LeaseID{1}, true, Actor{})),
		m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1}})),
		inner,
		m(EncodeGrant(0, 2, 5000, "")),
	})))
	for i := range 4 {
		if !errors.Is(res.Batch[i].Err, ErrNotBatchable) {
			t.Errorf("command %d: %v, want %v", i, res.Batch[i].Err, ErrNotBatchable)
		}
	}
	if res.Batch[4].Err != nil || n.le.Lookup(2) == nil || n.le.Lookup(1) == nil || n.le.Lookup(3) != nil {
		t.Fatalf("grant beside refused commands: %v", res.Batch[4].Err)
	}
	if _, ok := n.f.Item("k"); ok {
		t.Fatal("a batched attach applied")
	}
	if _, err := EncodeBatch(nil); err == nil {
		t.Fatal("EncodeBatch of nothing succeeded")
	}
	n.refused(raw(t, &leasepb.Command{Version: BatchVersion, RequestId: 5, Body: &leasepb.Command_Batch{Batch: &leasepb.BatchCmd{Commands: [][]byte{m(EncodeGrant(0, 4, 5000, ""))}}}}), ErrRequestIDReused)
	n.refused(raw(t, &leasepb.Command{Version: BatchVersion, Body: &leasepb.Command_Batch{Batch: &leasepb.BatchCmd{}}}), ErrNoLeases)
	// The batch body came with version 2: a version-1 writer never made one.
	res = n.apply(raw(t, &leasepb.Command{Version: CommandVersion, Body: &leasepb.Command_Batch{Batch: &leasepb.BatchCmd{Commands: [][]byte{m(EncodeGrant(0, 4, 5000, ""))}}}}))
	if !errors.Is(res.Err, ErrUndecodable) || len(n.fatals) != 1 || n.le.Lookup(4) != nil {
		t.Fatalf("version-1 batch: %v, %d fatal calls", res.Err, len(n.fatals))
	}
	// An undecodable command inside a batch stops the node like one outside.
	res = n.apply(m(EncodeBatch([][]byte{{0xff}})))
	if !errors.Is(res.Batch[0].Err, ErrUndecodable) || len(n.fatals) != 2 {
		t.Fatalf("undecodable batched command: %v, %d fatal calls", res.Batch[0].Err, len(n.fatals))
	}
}
