package chaos

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"
)

// Two faults at once. With NemesisOverlap listed, half of the steps whose
// kind can carry another fault get a second fault of another listed kind
// nested inside their window: a partition while a node is down, a leader
// paused or killed while the network is split, a slow disk under a kill, a
// clock step during a partition. The inner fault starts 20-40% into the
// outer one and ends at least innerMargin before it, so that the union of
// the two windows is the outer window: the outage they cause together lies
// inside it, and bounded-expiry's allowance for the largest single fault
// (the outer one's: its overlap with the wait plus an election and the
// extension) still covers it. Faults that own cluster-wide state the other
// would undo are never nested: two partitions or two kills (one heal would
// restart or heal the other's), the isolated disk stall (it partitions),
// killing every node, membership changes, handovers, and the disk and
// snapshot faults (their safety argument needs every other node up and
// honest: nemesis_disk.go).
var overlapKinds = []string{NemesisKill, NemesisPause, NemesisPartition, NemesisClock, NemesisFsync}

// innerMargin is the least time between the end of a nested fault and the
// end of the fault it is nested in.
const innerMargin = 500 * time.Millisecond

// withoutOverlap removes NemesisOverlap from kinds and reports whether it
// was there.
func withoutOverlap(kinds []string) ([]string, bool) {
	if !slices.Contains(kinds, NemesisOverlap) {
		return kinds, false
	}
	return slices.DeleteFunc(slices.Clone(kinds), func(k string) bool { return k == NemesisOverlap }), true
}

// nestable reports whether a step may carry, or be, a nested fault.
func nestable(s *Step) bool {
	return slices.Contains(overlapKinds, s.Kind) && s.Variant != "all" && s.Variant != "leader-stall-isolated"
}

// nest may give s an inner fault of another kind from kinds (a draw of rng
// in every case, so the schedule stays a function of the seed).
func nest(s *Step, rng *rand.Rand, kinds []string, nodes int, election, ttl time.Duration) {
	var others []string
	for _, k := range kinds {
		if k != s.Kind && slices.Contains(overlapKinds, k) {
			others = append(others, k)
		}
	}
	if rng.IntN(2) == 0 || len(others) == 0 || !nestable(s) {
		return
	}
	in := Step{Kind: others[rng.IntN(len(others))], Pick: rng.Uint64()}
	fill(&in, rng, nodes, election, ttl)
	at := s.Duration/5 + time.Duration(rng.Int64N(int64(s.Duration/5)+1))
	in.Duration = min(in.Duration, s.Duration-at-innerMargin)
	if !nestable(&in) || in.Duration < innerMargin {
		return
	}
	s.Inner, s.InnerAt = &in, at
}

// hold keeps a fault applied for wait, running s.Inner (if any) inside
// that time: it starts s.InnerAt after the outer fault and heals before the
// outer one does, even when its apply or heal takes longer than planned.
func (ns *nemesis) hold(ctx context.Context, s Step, wait time.Duration) {
	if s.Inner == nil {
		sleep(ctx, wait)
		return
	}
	end := time.Now().Add(wait)
	if !sleep(ctx, s.InnerAt) {
		return
	}
	ns.step(ctx, *s.Inner)
	sleep(ctx, time.Until(end))
}
