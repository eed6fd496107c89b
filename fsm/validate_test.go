package fsm

import (
	"errors"
	"testing"

	"github.com/leasecluster/leasecluster/lessor"
)

// FuzzCheckDecodable holds CheckDecodable to its contract: it fails exactly
// for the entries whose apply calls OnFatal, and never panics.
func FuzzCheckDecodable(f *testing.F) {
	m := must(f)
	f.Add(m(EncodeGrant(1, 3, 2000, "")))
	f.Add(m(EncodeRevoke(2, []lessor.LeaseID{1, 2}, false, Actor{})))
	f.Add(m(EncodeAttach(3, 1, "k", "v", Actor{})))
	f.Add(m(EncodeCheckpoint([]lessor.Checkpoint{{ID: 1, Remaining: 10}})))
	f.Add(m(EncodeBatch([][]byte{m(EncodeGrant(6, 4, 2000, "")), m(EncodeRevoke(7, []lessor.LeaseID{2}, false, Actor{}))})))
	f.Add(m(EncodeBatch([][]byte{m(EncodeGrant(8, 5, 2000, "")), {0xff}})))
	f.Add(m(EncodeBatch([][]byte{{0x08, 0x07, 0x2a, 0x00}})))
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x07})
	f.Add([]byte{0xff})
	grant := m(EncodeGrant(1, 1, 5000, ""))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckDecodable(data)
		if err != nil && !errors.Is(err, ErrUndecodable) {
			t.Fatalf("CheckDecodable: %v does not wrap ErrUndecodable", err)
		}
		n := newNode(t, 4)
		n.ok(grant)
		_ = n.apply(data)
		if fatal := len(n.fatals) > 0; fatal != (err != nil) {
			t.Fatalf("CheckDecodable = %v, but apply called OnFatal %d times", err, len(n.fatals))
		}
	})
}
