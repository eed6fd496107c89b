package lessor

// leaseHeap is an indexed min-heap of leases. Each lease stores its own
// position (through idx), so Fix and Remove are O(log n) without a search.
type leaseHeap struct {
	items []*Lease
	key   func(*Lease) int64
	idx   func(*Lease) *int32
}

func (h *leaseHeap) Len() int { return len(h.items) }

// reset empties the heap in O(1). Positions stored in leases become stale;
// callers tell stale from live ones by the lessor's epoch.
func (h *leaseHeap) reset() { h.items = nil }

func (h *leaseHeap) top() *Lease { return h.items[0] }

func (h *leaseHeap) push(l *Lease) {
	*h.idx(l) = int32(len(h.items))
	h.items = append(h.items, l)
	h.up(len(h.items) - 1)
}

// fix restores the heap after l's key changed, or pushes l if absent.
func (h *leaseHeap) fix(l *Lease) {
	i := int(*h.idx(l))
	if i < 0 {
		h.push(l)
		return
	}
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
	h.items[n] = nil
	h.items = h.items[:n]
	*h.idx(l) = -1
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h *leaseHeap) less(i, j int) bool { return h.key(h.items[i]) < h.key(h.items[j]) }

func (h *leaseHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.idx(h.items[i]) = int32(i)
	*h.idx(h.items[j]) = int32(j)
}

func (h *leaseHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
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
		j := 2*i + 1
		if j >= n || j < 0 {
			break
		}
		if r := j + 1; r < n && h.less(r, j) {
			j = r
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
