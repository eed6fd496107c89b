package fsm

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/lessor"
)

// FuzzApply feeds arbitrary bytes to Apply as a command entry after a fixed
// prefix of state. It must never panic, must call OnFatal exactly when the
// entry is undecodable, and a refused entry must not change the state.
func FuzzApply(f *testing.F) {
	m := must(f)
	f.Add(m(EncodeGrant(1, 3, 2000, "")))
	f.Add(m(EncodeRevoke(2, []lessor.LeaseID{1, 2}, false, Actor{})))
	f.Add(m(EncodeRevoke(0, []lessor.LeaseID{9}, true, Actor{})))
	f.Add(m(EncodeAttach(3, 1, "k", "v", Actor{})))
	f.Add(m(EncodeAttach(4, 2, "k", "v", Actor{})))
	f.Add(m(EncodeDetach(5, 1, "k", Actor{})))
	f.Add(m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 10}, {ID: 2}})))
	f.Add(m(EncodeBatch([][]byte{m(EncodeGrant(6, 4, 2000, "")), m(EncodeRevoke(7, []lessor.LeaseID{2}, false, Actor{}))})))
	f.Add(m(EncodeBatch([][]byte{m(EncodeAttach(8, 1, "j", "v", Actor{})), {0xff}})))
	f.Add(m(EncodeAttach(9, 2, "j", "v", Actor{Identity: "app1"})))
	f.Add(m(EncodeRevoke(10, []lessor.LeaseID{2}, false, Actor{Identity: "app2"})))
	f.Add(m(EncodeDetach(11, 1, "k", Actor{Identity: "ops", Admin: true})))
	f.Add(m(EncodeGrant(12, 5, 2000, "app2")))
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x02})
	f.Add([]byte{0xff})
	// Lease 2 is owned by app1: refusals of other identities are explored too.
	prefix := [][]byte{m(EncodeGrant(1, 1, 5000, "")), m(EncodeGrant(2, 2, 5000, "app1")), m(EncodeAttach(3, 1, "k", "v", Actor{}))}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := newNode(t, 4)
		for _, p := range prefix {
			n.ok(p)
		}
		before := n.f.StateHash()
		res, ok := n.f.Apply(n.entry(data)).(*Result)
		if !ok {
			t.Fatal("Apply did not return a *Result")
		}
		undecodable := errors.Is(res.Err, ErrUndecodable)
		for _, r := range res.Batch {
			undecodable = undecodable || errors.Is(r.Err, ErrUndecodable)
		}
		if undecodable != (len(n.fatals) > 0) {
			t.Fatalf("error %v with %d OnFatal calls", res.Err, len(n.fatals))
		}
		if res.Err != nil && n.f.StateHash() != before {
			t.Fatalf("entry refused with %v changed the state", res.Err)
		}
		_ = n.f.ApplyBatch([]*raft.Log{n.entry(data)})
	})
}
