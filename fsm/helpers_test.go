package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// node is one FSM over a real lessor, fed log entries with consecutive
// indexes as raft would.
type node struct {
	t      testing.TB
	f      *FSM
	le     lessor.Lessor
	idx    uint64
	fatals []error
}

func newNode(t testing.TB, window int) *node {
	t.Helper()
	le, err := lessor.NewLessor(lessor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(le.Stop)
	n := &node{t: t, le: le}
	if window == 0 {
		window = DedupeWindow
	}
	n.f, err = newFSM(Config{Lessor: le, OnFatal: func(err error) { n.fatals = append(n.fatals, err) }}, window)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// entry returns the next command entry.
func (n *node) entry(data []byte) *raft.Log {
	n.idx++
	return &raft.Log{Index: n.idx, Term: 1, Type: raft.LogCommand, Data: data}
}

// apply applies one command entry and returns its result.
func (n *node) apply(data []byte) *Result {
	n.t.Helper()
	res, ok := n.f.Apply(n.entry(data)).(*Result)
	if !ok {
		n.t.Fatalf("Apply did not return a *Result")
	}
	return res
}

// ok applies a command that must succeed.
func (n *node) ok(data []byte) *Result {
	n.t.Helper()
	res := n.apply(data)
	if res.Err != nil {
		n.t.Fatalf("entry %d: %v", n.idx, res.Err)
	}
	return res
}

// refused applies a command that must fail with want and change nothing.
func (n *node) refused(data []byte, want error) {
	n.t.Helper()
	before := n.f.StateHash()
	res := n.apply(data)
	if !errors.Is(res.Err, want) {
		n.t.Fatalf("entry %d: error %v, want %v", n.idx, res.Err, want)
	}
	if after := n.f.StateHash(); after != before {
		n.t.Fatalf("entry %d failed with %v but changed the state", n.idx, res.Err)
	}
	if n.f.AppliedIndex() != n.idx {
		n.t.Fatalf("AppliedIndex %d after entry %d", n.f.AppliedIndex(), n.idx)
	}
}

// snapshotBytes persists a snapshot of n into memory.
func (n *node) snapshotBytes() []byte {
	n.t.Helper()
	snap, err := n.f.Snapshot()
	if err != nil {
		n.t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		n.t.Fatal(err)
	}
	if !sink.closed {
		n.t.Fatal("Persist did not close the sink")
	}
	return sink.Bytes()
}

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// must unwraps an encoder's result.
func must(t testing.TB) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// raw encodes a command without the encoders' validation, as a faulty or
// hostile leader might.
func raw(t testing.TB, cmd *leasepb.Command) []byte {
	t.Helper()
	if cmd.Version == 0 {
		cmd.Version = CommandVersion
	}
	b, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rawGrant(id, ttl int64) *leasepb.Command {
	return &leasepb.Command{Body: &leasepb.Command_Grant{Grant: &leasepb.GrantCmd{Id: id, TtlMs: ttl}}}
}

func rawAttach(lease int64, key, value string) *leasepb.Command {
	return &leasepb.Command{Body: &leasepb.Command_Attach{Attach: &leasepb.AttachCmd{LeaseId: lease, Key: key, Value: value}}}
}

// rawAttachBytes builds an attach entry by hand, because proto.Marshal
// refuses strings that are not UTF-8.
func rawAttachBytes(lease int64, key, value string) []byte {
	var b []byte
	b = append(b, 0x08, CommandVersion) // version
	inner := []byte{0x08, byte(lease)}  // lease_id (small)
	inner = append(inner, 0x12, byte(len(key)))
	inner = append(inner, key...)
	inner = append(inner, 0x1a, byte(len(value)))
	inner = append(inner, value...)
	b = append(b, 0x62, byte(len(inner))) // field 12, attach
	return append(b, inner...)
}
