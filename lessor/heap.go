package lessor

// leaseHeap is an indexed 4-ary min-heap of leases. Each lease stores its
// own position (through idx), so fix and remove are O(log n) without a
// search. Each entry carries a copy of its lease's key, taken when the lease
// is pushed or fixed, so that comparisons read the heap's own array rather
// than leases scattered over a table of a million: there, nearly every
// comparison was a cache miss. What is left is one miss per level moved (the
// position written into the lease moved past), and four children per node
// halve the levels of a binary heap. Whoever changes a lease's key must fix
// it.
type leaseHeap struct {
	items []heapItem
	key   func(*Lease) int64
	idx   func(*Lease) *int32
}

type heapItem struct {
	key int64
	l   *Lease
}

func (h *leaseHeap) Len() int { return len(h.items) }

// reset empties the heap in O(1). Positions stored in leases become stale;
// callers tell stale from live ones by the lessor's epoch.
func (h *leaseHeap) reset() { h.items = nil }

func (h *leaseHeap) top() *Lease { return h.items[0].l }

func (h *leaseHeap) push(l *Lease) {
	*h.idx(l) = int32(len(h.items))
	h.items = append(h.items, heapItem{key: h.key(l), l: l})
	h.up(len(h.items) - 1)
}

// fix restores the heap after l's key changed, or pushes l if absent.
func (h *leaseHeap) fix(l *Lease) {
	i := int(*h.idx(l))
	if i < 0 {
		h.push(l)
		return
	}
	h.items[i].key = h.key(l)
	if !h.down(i) {
		h.up(i)
	}
}

func (h *leaseHeap) remove(l *Lease) {
	i := int(*h.idx(l))
	if i < 0 {
		return
	}
	n := len(h.items) - 1
	if i != n {
		h.swap(i, n)
	}
	h.items[n] = heapItem{}
	h.items = h.items[:n]
	*h.idx(l) = -1
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h *leaseHeap) less(i, j int) bool { return h.items[i].key < h.items[j].key }

func (h *leaseHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.idx(h.items[i].l) = int32(i)
	*h.idx(h.items[j].l) = int32(j)
}

// arity is the number of children of a node.
const arity = 4

func (h *leaseHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / arity
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *leaseHeap) down(i0 int) bool {
	i, n := i0, len(h.items)
	for {
		first := arity*i + 1
		if first >= n || first < 0 {
			break
		}
		j := first // the least child
		for c := first + 1; c < min(first+arity, n); c++ {
			if h.less(c, j) {
				j = c
			}
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// bucket is a token bucket measured in the lessor's nanosecond time.
type bucket struct {
	tokens float64
	last   int64
}

// take returns how many of want tokens are available at now (rate per
// second, capped at burst) and consumes them. rate 0 means unlimited.
func (b *bucket) take(now int64, want, rate, burst int) int {
	if rate <= 0 {
		return want
	}
	b.tokens = min(float64(burst), b.tokens+float64(now-b.last)*float64(rate)/1e9)
	b.last = now
	n := min(want, int(b.tokens))
	b.tokens -= float64(n)
	return n
}

// spreader moves expiries that would pile up after a Promote into later
// slots, so that no slot holds more leases than the revoke rate can revoke in
// it. It only ever moves an expiry later.
type spreader struct {
	width    int64 // slot width in ns
	capacity int32
	count    map[int64]int32
	next     map[int64]int64 // full slot -> a later slot to try
}

func newSpreader(rate, batch int) *spreader {
	if rate <= 0 {
		return nil
	}
	width := int64(batch) * 1e9 / int64(rate)
	capacity := int32(max(1, batch*3/4)) // leave a quarter for renewals that lapse meanwhile
	return &spreader{width: max(width, 1), capacity: capacity, count: map[int64]int32{}, next: map[int64]int64{}}
}

// place returns the expiry to use for a lease due at t, not before now.
func (s *spreader) place(t, now int64) int64 {
	if s == nil {
		return t
	}
	want := max(t, now) / s.width
	slot := s.find(want)
	s.count[slot]++
	if s.count[slot] >= s.capacity {
		s.next[slot] = slot + 1
	}
	return max(t, slot*s.width)
}

// find returns the first slot at or after slot that has room, compressing
// the chain of full slots it walked.
func (s *spreader) find(slot int64) int64 {
	root := slot
	for {
		n, ok := s.next[root]
		if !ok {
			break
		}
		root = n
	}
	for slot != root {
		n := s.next[slot]
		s.next[slot] = root
		slot = n
	}
	return root
}
