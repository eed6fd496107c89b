package chaos

import (
	"fmt"
	"sort"
)

// holdInterval is when a lock holder knew it held key: from the completion
// of its attach to its last use of the fenced resource (made only while its
// lease deadline was ahead).
type holdInterval struct {
	key       string
	lease     int64
	rev       uint64
	from, to  int64
	attachOp  int
	lastUseOp int
}

func holdIntervals(ops []Op) map[string][]*holdInterval {
	byLease := map[string]map[int64]*holdInterval{}
	for _, op := range ops {
		if op.Status != StatusOK || op.Kind != OpAttach {
			continue
		}
		m := byLease[op.Key]
		if m == nil {
			m = map[int64]*holdInterval{}
			byLease[op.Key] = m
		}
		if _, ok := m[op.Lease]; !ok {
			m[op.Lease] = &holdInterval{key: op.Key, lease: op.Lease, rev: op.Rev, from: op.Complete, to: op.Complete, attachOp: op.Index, lastUseOp: op.Index}
		}
	}
	for _, op := range ops {
		// A write made after its deadline (a holder paused between its
		// check and its write: the client-pause nemesis) is no use inside
		// the validity window; fencing judges it.
		if op.Kind != OpWrite || (op.Deadline > 0 && op.Invoke >= op.Deadline) {
			continue
		}
		if h := byLease[op.Key][op.Lease]; h != nil && op.Invoke > h.to {
			h.to, h.lastUseOp = op.Invoke, op.Index
		}
	}
	out := map[string][]*holdInterval{}
	for k, m := range byLease {
		for _, h := range m {
			out[k] = append(out[k], h)
		}
		sort.Slice(out[k], func(i, j int) bool { return out[k][i].from < out[k][j].from })
	}
	return out
}

// checkNoOverlap: two leases never hold a key at once, as far as holders
// that respect their validity window can tell. If B's attach completed
// while A was still using the key (inside A's deadline), A's lease lost the
// key early.
func checkNoOverlap(ops []Op) Verdict {
	var c collector
	all := holdIntervals(ops)
	for _, key := range sortedKeys(all) {
		hs := all[key]
		c.judged += len(hs)
		for i := range hs {
			for j := i + 1; j < len(hs); j++ {
				a, b := hs[i], hs[j]
				if b.from < a.to {
					c.add("%s: lease %d acquired it at %s (op %d) while lease %d, holder since %s, still used it at %s (op %d)",
						key, b.lease, ms(b.from), b.attachOp, a.lease, ms(a.from), ms(a.to), a.lastUseOp)
				}
			}
		}
	}
	return c.verdict(fmt.Sprintf("%d holds, none overlapping", c.judged))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkFencing: fencing tokens (attach revisions) strictly increase per key
// across holders in real-time order, no two leases share one, and the
// fenced resource never accepted a write whose token was already superseded
// by a completed acquisition (a stale holder writing after a newer one took
// the lock).
func checkFencing(ops []Op) Verdict {
	var c collector
	attaches := map[string][]Op{}
	writes, refused := 0, 0
	for _, op := range ops {
		if op.Kind == OpWrite && !op.Accepted {
			refused++
		}
		if op.Kind == OpAttach && op.Status == StatusOK {
			attaches[op.Key] = append(attaches[op.Key], op)
		}
	}
	for _, key := range sortedKeys(attaches) {
		as := attaches[key]
		owner := map[uint64]int64{}
		for i, a := range as {
			if l, ok := owner[a.Rev]; ok && l != a.Lease {
				c.add("%s: token %d given to lease %d and lease %d", key, a.Rev, l, a.Lease)
			}
			owner[a.Rev] = a.Lease
			for _, b := range as[i+1:] {
				if b.Lease != a.Lease && a.Complete < b.Invoke && b.Rev <= a.Rev {
					c.add("%s: lease %d got token %d (op %d) after lease %d got %d (op %d)",
						key, b.Lease, b.Rev, b.Index, a.Lease, a.Rev, a.Index)
				}
			}
		}
	}
	for _, w := range ops {
		if w.Kind != OpWrite || !w.Accepted {
			continue
		}
		writes++
		for _, a := range attaches[w.Key] {
			if a.Rev > w.Rev && a.Complete < w.Invoke {
				c.add("%s: stale write with token %d by lease %d accepted at %s (op %d); lease %d had token %d since %s (op %d)",
					w.Key, w.Rev, w.Lease, ms(w.Invoke), w.Index, a.Lease, a.Rev, ms(a.Complete), a.Index)
				break
			}
		}
	}
	c.judged = countAll(attaches) + writes
	return c.verdict(fmt.Sprintf("%d acquisitions, %d accepted writes, tokens monotonic, %d stale writes refused", countAll(attaches), writes, refused))
}

func countAll(m map[string][]Op) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}
