package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/limits"
	"github.com/leasecluster/leasecluster/snapshot"
)

var (
	owner  = Actor{Identity: "app1"}
	other  = Actor{Identity: "app2"}
	nobody = Actor{}
	admin  = Actor{Identity: "ops", Admin: true}
)

// ownedNode grants lease 1 owned by app1 with item "k", and lease 2 without
// an owner with item "free".
func ownedNode(t *testing.T) *node {
	t.Helper()
	m := must(t)
	n := newNode(t, 0)
	n.ok(m(EncodeGrant(0, 1, 5000, "app1")))
	n.ok(m(EncodeGrant(0, 2, 5000, "")))
	n.ok(m(EncodeAttach(0, 1, "k", "v", owner)))
	n.ok(m(EncodeAttach(0, 2, "free", "v", nobody)))
	if got := n.le.Lookup(1).Owner(); got != "app1" {
		t.Fatalf("lease 1 owner %q", got)
	}
	return n
}

// Rule 10: a client revoke, an attach to a lease and a detach from it are
// refused (ErrPermissionDenied, nothing changes: node.refused compares the
// state hash) unless the lease has no owner, or the actor is its owner or an
// admin. The admin flag is the logged one: an admin's identity need not be
// the owner's.
func TestOwnershipRule(t *testing.T) {
	type op struct {
		name  string
		cmd   func(a Actor) ([]byte, error)
		check func(n *node) bool // the command took effect
	}
	ops := []op{
		{"revoke", func(a Actor) ([]byte, error) { return EncodeRevoke(0, []lessor.LeaseID{1}, false, a) },
			func(n *node) bool { _, ok := n.f.Item("k"); return n.le.Lookup(1) == nil && !ok }},
		{"attach", func(a Actor) ([]byte, error) { return EncodeAttach(0, 1, "new", "v", a) },
			func(n *node) bool { it, ok := n.f.Item("new"); return ok && it.LeaseID == 1 }},
		{"re-attach", func(a Actor) ([]byte, error) { return EncodeAttach(0, 1, "k", "v2", a) },
			func(n *node) bool { it, _ := n.f.Item("k"); return it.Value == "v2" }},
		{"detach", func(a Actor) ([]byte, error) { return EncodeDetach(0, 1, "k", a) },
			func(n *node) bool {
				_, ok := n.f.Item("k")
				return !ok && n.le.GetLease(lessor.LeaseItem{Key: "k"}) == 0
			}},
	}
	actors := []struct {
		name    string
		a       Actor
		allowed bool
	}{
		{"owner", owner, true},
		{"admin", admin, true},
		{"admin without identity", Actor{Admin: true}, true},
		{"other identity", other, false},
		{"no identity", nobody, false},
		{"owner's name in another case", Actor{Identity: "APP1"}, false},
		{"owner's name with a suffix", Actor{Identity: "app1 "}, false},
	}
	for _, o := range ops {
		for _, ac := range actors {
			t.Run(o.name+" by "+ac.name, func(t *testing.T) {
				n := ownedNode(t)
				data := must(t)(o.cmd(ac.a))
				if !ac.allowed {
					n.refused(data, lessor.ErrPermissionDenied)
					if o.check(n) || n.le.Lookup(1) == nil {
						t.Fatal("a refused command took effect")
					}
					return
				}
				n.ok(data)
				if !o.check(n) {
					t.Fatal("an allowed command did not take effect")
				}
			})
		}
	}
	// A lease without an owner: anyone, with or without an identity.
	for _, a := range []Actor{nobody, other, admin} {
		n := ownedNode(t)
		m := must(t)
		n.ok(m(EncodeAttach(0, 2, "free2", "v", a)))
		n.ok(m(EncodeDetach(0, 2, "free", a)))
		n.ok(m(EncodeRevoke(0, []lessor.LeaseID{2}, false, a)))
	}
}

// Expiry revokes are the leader's: they ignore ownership and the actor.
func TestOwnershipExpiryRevoke(t *testing.T) {
	for _, a := range []Actor{nobody, other} {
		n := ownedNode(t)
		n.ok(must(t)(EncodeRevoke(0, []lessor.LeaseID{1, 2, 99}, true, a)))
		if n.le.Lookup(1) != nil || n.le.Lookup(2) != nil {
			t.Fatal("an expiry revoke left an owned lease")
		}
		if _, ok := n.f.Item("k"); ok {
			t.Fatal("an expiry revoke left an owned lease's item")
		}
	}
}

// The order of the checks is fixed (fsm/DESIGN.md): lease not found, then
// permission, then the item's holder. A revoke of several leases checks
// them in the command's order and the first failure decides; nothing is
// revoked unless every one passes.
func TestOwnershipOrder(t *testing.T) {
	m := must(t)
	n := ownedNode(t)
	n.ok(m(EncodeGrant(0, 3, 5000, "app2")))
	n.ok(m(EncodeAttach(0, 3, "held", "v", other)))

	// Attach: not found before permission; permission before ErrItemHeld.
	n.refused(m(EncodeAttach(0, 9, "k", "v", other)), lessor.ErrLeaseNotFound)
	n.refused(m(EncodeAttach(0, 1, "held", "v", other)), lessor.ErrPermissionDenied)
	n.refused(m(EncodeAttach(0, 1, "held", "v", owner)), lessor.ErrItemHeld)
	n.refused(m(EncodeAttach(0, 1, "held", "v", admin)), lessor.ErrItemHeld)
	// Detach: the named lease's owner decides, before the lessor's checks.
	n.refused(m(EncodeDetach(0, 9, "k", other)), lessor.ErrLeaseNotFound)
	n.refused(m(EncodeDetach(0, 1, "missing", other)), lessor.ErrPermissionDenied)
	n.refused(m(EncodeDetach(0, 1, "missing", owner)), lessor.ErrItemNotFound)
	n.refused(m(EncodeDetach(0, 1, "held", other)), lessor.ErrPermissionDenied)
	n.refused(m(EncodeDetach(0, 1, "held", owner)), lessor.ErrItemHeld)
	// Naming a lease one may act on never reaches another's item: app2
	// names its own lease 3 to detach app1's "k", and the lessor refuses.
	n.refused(m(EncodeDetach(0, 3, "k", other)), lessor.ErrItemHeld)
	// Likewise lease 2, which has no owner.
	n.refused(m(EncodeDetach(0, 2, "k", nobody)), lessor.ErrItemHeld)

	// Revoke: all or nothing, first failure in the command's order.
	n.refused(m(EncodeRevoke(0, []lessor.LeaseID{2, 1}, false, other)), lessor.ErrPermissionDenied)
	n.refused(m(EncodeRevoke(0, []lessor.LeaseID{1, 99}, false, other)), lessor.ErrPermissionDenied)
	n.refused(m(EncodeRevoke(0, []lessor.LeaseID{99, 1}, false, other)), lessor.ErrLeaseNotFound)
	n.refused(m(EncodeRevoke(0, []lessor.LeaseID{3, 1}, false, other)), lessor.ErrPermissionDenied)
	n.refused(m(EncodeRevoke(0, []lessor.LeaseID{3, 1}, false, owner)), lessor.ErrPermissionDenied)
	if n.le.Lookup(2) == nil || n.le.Lookup(3) == nil {
		t.Fatal("a refused revoke revoked a lease")
	}
	n.ok(m(EncodeRevoke(0, []lessor.LeaseID{3, 2, 1}, false, admin)))
	if len(n.le.State()) != 0 {
		t.Fatalf("leases left after an admin's revoke: %+v", n.le.State())
	}
}

// Dedupe: a refused command is not remembered, so its retry is evaluated
// again against the state at its own log position (refused again, or
// applied if the lease has meanwhile changed hands: it never does, owners
// are fixed, but it may be gone). A remembered success replays its result
// to any retry with its request ID and kind, whoever sends it, and changes
// nothing.
func TestOwnershipDedupe(t *testing.T) {
	m := must(t)
	n := ownedNode(t)
	denied := m(EncodeAttach(7, 1, "x", "v", other))
	n.refused(denied, lessor.ErrPermissionDenied)
	n.refused(denied, lessor.ErrPermissionDenied)
	if _, ok := n.f.dedupe.get(7); ok {
		t.Fatal("a refused command was remembered")
	}
	// The same request ID, now from the owner, applies (it was never used).
	res := n.ok(m(EncodeAttach(7, 1, "x", "v", owner)))
	before := n.f.StateHash()
	if again := n.apply(denied); again.Err != nil || again.Item != res.Item {
		t.Fatalf("replay to another identity: %+v, want %+v", again, res)
	}
	if n.f.StateHash() != before {
		t.Fatal("a replay changed the state")
	}
	// A refused revoke's retry after the lease is gone: not found.
	rv := m(EncodeRevoke(8, []lessor.LeaseID{1}, false, other))
	n.refused(rv, lessor.ErrPermissionDenied)
	n.ok(m(EncodeRevoke(9, []lessor.LeaseID{1}, false, owner)))
	n.refused(rv, lessor.ErrLeaseNotFound)
}

// Group commit: owned grants and revokes share an entry; a denied revoke
// fails alone.
func TestOwnershipBatch(t *testing.T) {
	m := must(t)
	n := newNode(t, 0)
	res := n.ok(m(EncodeBatch([][]byte{
		m(EncodeGrant(1, 1, 5000, "app1")),
		m(EncodeGrant(2, 2, 5000, "app2")),
		m(EncodeRevoke(3, []lessor.LeaseID{1}, false, other)),
		m(EncodeRevoke(4, []lessor.LeaseID{2}, false, other)),
	})))
	if len(res.Batch) != 4 || res.Batch[0].Err != nil || res.Batch[1].Err != nil ||
		!errors.Is(res.Batch[2].Err, lessor.ErrPermissionDenied) || res.Batch[3].Err != nil {
		t.Fatalf("batch results %+v", res.Batch)
	}
	if l := n.le.Lookup(1); l == nil || l.Owner() != "app1" || n.le.Lookup(2) != nil {
		t.Fatal("batch applied the wrong revokes")
	}
}

// Owners and identities are validated like keys: at most
// limits.MaxIdentityBytes of UTF-8, by the encoders and again on apply.
func TestOwnershipValidation(t *testing.T) {
	m := must(t)
	long := strings.Repeat("o", limits.MaxIdentityBytes+1)
	max := strings.Repeat("o", limits.MaxIdentityBytes)
	for name, err := range map[string]error{
		"grant":  second(EncodeGrant(0, 1, 5000, long)),
		"utf-8":  second(EncodeGrant(0, 1, 5000, "a\xffb")),
		"revoke": second(EncodeRevoke(0, []lessor.LeaseID{1}, false, Actor{Identity: long})),
		"attach": second(EncodeAttach(0, 1, "k", "v", Actor{Identity: long, Admin: true})),
		"detach": second(EncodeDetach(0, 1, "k", Actor{Identity: long})),
	} {
		if !errors.Is(err, limits.ErrIdentityInvalid) {
			t.Errorf("%s with an invalid identity: %v", name, err)
		}
	}
	n := newNode(t, 0)
	n.ok(m(EncodeGrant(0, 1, 5000, max)))
	n.ok(m(EncodeAttach(0, 1, "k", "v", Actor{Identity: max})))
	// From a faulty leader, apply refuses them too.
	n.refused(raw(t, &leasepb.Command{Body: &leasepb.Command_Grant{Grant: &leasepb.GrantCmd{Id: 2, TtlMs: 5000, Owner: long}}}), limits.ErrIdentityInvalid)
	bad := rawAttach(1, "j", "v")
	bad.GetAttach().Actor = &leasepb.Actor{Identity: long, Admin: true}
	n.refused(raw(t, bad), limits.ErrIdentityInvalid)
}

func second(_ []byte, err error) error { return err }

// Without identities, commands are byte for byte what builds before
// ownership wrote: no owner, no actor field. An actor carrying fields this
// build does not know is undecodable, like any other unknown field.
func TestOwnershipWireFormat(t *testing.T) {
	m := must(t)
	if !bytes.Equal(m(EncodeGrant(0, 1, 5000, "")), raw(t, rawGrant(1, 5000))) {
		t.Error("a grant without an owner is not the old encoding")
	}
	if !bytes.Equal(m(EncodeAttach(0, 1, "k", "v", nobody)), raw(t, rawAttach(1, "k", "v"))) {
		t.Error("an attach without an actor is not the old encoding")
	}
	cmd := rawAttach(1, "k", "v")
	a := &leasepb.Actor{Identity: "app1"}
	a.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
	cmd.GetAttach().Actor = a
	data := raw(t, cmd)
	if err := CheckDecodable(data); !errors.Is(err, ErrUndecodable) {
		t.Fatalf("CheckDecodable of an actor with an unknown field: %v", err)
	}
	n := newNode(t, 0)
	n.ok(m(EncodeGrant(0, 1, 5000, "app1")))
	if res := n.apply(data); !errors.Is(res.Err, ErrUndecodable) || len(n.fatals) != 1 {
		t.Fatalf("apply of an actor with an unknown field: %v, %d fatals", res.Err, len(n.fatals))
	}
	if _, ok := n.f.Item("k"); ok {
		t.Fatal("an undecodable attach was applied")
	}
}

// The owner is replicated state: part of the state hash, of snapshots and
// of what a restore brings back; an owner no grant could log is refused.
func TestOwnerInHashAndSnapshot(t *testing.T) {
	m := must(t)
	hashes := map[string]string{}
	for _, o := range []string{"", "app1", "app2"} {
		n := newNode(t, 0)
		n.ok(m(EncodeGrant(0, 1, 5000, o)))
		h := n.f.StateHash()
		if prev, dup := hashes[h]; dup {
			t.Fatalf("owners %q and %q give the same hash", o, prev)
		}
		hashes[h] = o
	}

	a := ownedNode(t)
	data := a.snapshotBytes()
	b := newNode(t, 0)
	if err := b.f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if b.f.StateHash() != a.f.StateHash() {
		t.Fatal("restored hash differs")
	}
	if b.le.Lookup(1).Owner() != "app1" || b.le.Lookup(2).Owner() != "" {
		t.Fatalf("restored owners %q, %q", b.le.Lookup(1).Owner(), b.le.Lookup(2).Owner())
	}
	// The rule holds on the restored replica.
	b.idx = a.idx
	b.refused(m(EncodeRevoke(0, []lessor.LeaseID{1}, false, other)), lessor.ErrPermissionDenied)
	b.ok(m(EncodeRevoke(0, []lessor.LeaseID{1}, false, owner)))

	var buf bytes.Buffer
	err := snapshot.Write(&buf, &snapshot.Snapshot{Index: 9, Leases: []lessor.LeaseState{
		{ID: 1, TTL: 5000, Owner: strings.Repeat("o", limits.MaxIdentityBytes+1)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hash := b.f.StateHash()
	if err := b.f.Restore(io.NopCloser(&buf)); !errors.Is(err, limits.ErrIdentityInvalid) {
		t.Fatalf("restore of an over-long owner: %v", err)
	}
	if b.f.StateHash() != hash {
		t.Fatal("a refused restore changed the state")
	}
}
