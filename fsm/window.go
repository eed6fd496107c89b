package fsm

import "github.com/leasecluster/leasecluster/snapshot"

// window remembers the results of the last max requests that carried a
// request ID, evicting the oldest by apply order. It is replicated state:
// every replica adds and evicts the same entries at the same log positions.
// Guarded by FSM.stateMu.
type window struct {
	max   int
	order []uint64 // request IDs, oldest first, from order[start]
	start int
	byID  map[uint64]snapshot.Dedupe
}

func newWindow(max int) *window {
	return &window{max: max, byID: make(map[uint64]snapshot.Dedupe)}
}

func (w *window) get(id uint64) (snapshot.Dedupe, bool) {
	d, ok := w.byID[id]
	return d, ok
}

// add remembers d, which must not be remembered already.
func (w *window) add(d snapshot.Dedupe) {
	w.byID[d.RequestID] = d
	w.order = append(w.order, d.RequestID)
	for len(w.order)-w.start > w.max {
		delete(w.byID, w.order[w.start])
		w.start++
	}
	// Compact once the evicted prefix dominates, so memory stays O(max).
	if w.start > 1024 && w.start > len(w.order)/2 {
		w.order = append(w.order[:0], w.order[w.start:]...)
		w.start = 0
	}
}

func (w *window) len() int { return len(w.order) - w.start }

// entries returns the remembered requests, oldest first.
func (w *window) entries() []snapshot.Dedupe {
	out := make([]snapshot.Dedupe, 0, w.len())
	for _, id := range w.order[w.start:] {
		out = append(out, w.byID[id])
	}
	return out
}

// reset replaces the contents with entries (oldest first), keeping the
// newest max of them if the writer's window was larger: only a snapshot of
// a build with a larger DedupeWindow (a format change) or a test's small
// window gets there.
func (w *window) reset(entries []snapshot.Dedupe) {
	if len(entries) > w.max {
		entries = entries[len(entries)-w.max:]
	}
	w.order = make([]uint64, 0, len(entries))
	w.start = 0
	w.byID = make(map[uint64]snapshot.Dedupe, len(entries))
	for _, d := range entries {
		w.byID[d.RequestID] = d
		w.order = append(w.order, d.RequestID)
	}
}
