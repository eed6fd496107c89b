package lessor

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// checkHeap verifies the heap order and that each lease knows its position.
func checkHeap(t *testing.T, h *leaseHeap) {
	t.Helper()
	for i, it := range h.items {
		l := it.l
		if int(*h.idx(l)) != i {
			t.Fatalf("item %d: lease says position %d", i, *h.idx(l))
		}
		if it.key != h.key(l) {
			t.Fatalf("item %d: heap holds key %d, the lease has %d", i, it.key, h.key(l))
		}
		if p := h.items[(i-1)/arity]; i > 0 && p.key > it.key {
			t.Fatalf("item %d: key %d below its parent's %d", i, it.key, p.key)
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

// byAddress returns the same leases, each no more than its 64 KiB region
// out of ascending address order.
func TestByAddress(t *testing.T) {
	ls := make([]*Lease, 200_000)
	for i := range ls {
		ls[i] = &Lease{ID: LeaseID(i + 1)}
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
	out := byAddress(slices.Clone(ls))
	if len(out) != len(ls) {
		t.Fatalf("got %d leases, want %d", len(out), len(ls))
	}
	seen := map[LeaseID]bool{}
	for i, l := range out {
		if seen[l.ID] {
			t.Fatalf("lease %d twice", l.ID)
		}
		seen[l.ID] = true
		if i > 0 && uintptr(unsafe.Pointer(l))+1<<16 <= uintptr(unsafe.Pointer(out[i-1])) {
			t.Fatalf("lease at %#x after one at %#x: more than a region out of order", uintptr(unsafe.Pointer(l)), uintptr(unsafe.Pointer(out[i-1])))
		}
	}
}
