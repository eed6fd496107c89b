package lessor

import (
	"math/rand/v2"
	"testing"
)

// checkHeap verifies the heap order and that each lease knows its position.
func checkHeap(t *testing.T, h *leaseHeap) {
	t.Helper()
	for i, l := range h.items {
		if int(*h.idx(l)) != i {
			t.Fatalf("item %d: lease says position %d", i, *h.idx(l))
		}
		if p := h.items[(i-1)/2]; i > 0 && h.key(p) > h.key(l) {
			t.Fatalf("item %d: key %d below its parent's %d", i, h.key(l), h.key(p))
		}
	}
}

// Rule 5: the expiry and checkpoint heaps stay ordered, and every lease
// knows its position, through pushes, key changes (fix) and removals.
func TestLeaseHeap(t *testing.T) {
	le := newLessor(Config{})
	defer le.Stop()
	for _, cp := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(1, 2))
		h := &le.expHeap
		if cp {
			h = &le.cpHeap
		}
		setKey := func(l *Lease, k int64) {
			if cp {
				l.cpDue = k
			} else {
				l.offerAt = k
			}
		}
		var leases []*Lease
		for i := range 2000 {
			l := &Lease{ID: LeaseID(i + 1), expIdx: -1, cpIdx: -1}
			leases = append(leases, l)
		}
		for op := range 20000 {
			l := leases[rng.IntN(len(leases))]
			switch rng.IntN(3) {
			case 0, 1: // fix pushes a lease that is absent
				setKey(l, rng.Int64N(500)) // many equal keys, as after a Promote
				h.fix(l)
			case 2:
				h.remove(l)
			}
			if op%500 == 0 {
				checkHeap(t, h)
			}
		}
		checkHeap(t, h)
		last := int64(-1)
		for h.Len() > 0 {
			l := h.top()
			if h.key(l) < last {
				t.Fatalf("popped key %d after %d", h.key(l), last)
			}
			last = h.key(l)
			h.remove(l)
			if *h.idx(l) != -1 {
				t.Fatal("a removed lease keeps a position")
			}
		}
	}
}
