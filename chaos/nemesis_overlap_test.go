package chaos

import (
	"slices"
	"testing"
	"time"
)

// TestScheduleOverlap: with "overlap" listed, some steps carry a second
// fault of another kind nested inside their window (so the checkers'
// largest-single-fault allowance still covers the pair), never one that
// would undo the other's state; without it, no step does.
func TestScheduleOverlap(t *testing.T) {
	kinds := []string{NemesisKill, NemesisPause, NemesisPartition, NemesisClock, NemesisFsync, NemesisTransfer, NemesisMembership, NemesisOverlap}
	nested := map[string]int{}
	for seed := range int64(20) {
		steps := Schedule(seed, kinds, 2*time.Minute, 3, time.Second, 3*time.Second)
		var total time.Duration
		for _, s := range steps {
			total += s.Gap + s.Duration
			if s.Kind == NemesisOverlap {
				t.Fatalf("seed %d: overlap scheduled as a fault of its own: %v", seed, s)
			}
			in := s.Inner
			if in == nil {
				continue
			}
			nested[s.Kind+"+"+in.Kind]++
			if !nestable(&s) || !nestable(in) || in.Kind == s.Kind || in.Inner != nil {
				t.Errorf("seed %d: %v: a pair that must not nest", seed, s)
			}
			if s.InnerAt < s.Duration/5 || s.InnerAt > 2*s.Duration/5+time.Nanosecond {
				t.Errorf("seed %d: %v: inner starts %v into a %v fault, want 20-40%%", seed, s, s.InnerAt, s.Duration)
			}
			if end := s.InnerAt + in.Duration; end > s.Duration-innerMargin || in.Duration < innerMargin {
				t.Errorf("seed %d: %v: inner ends at %v of %v", seed, s, end, s.Duration)
			}
		}
		if total > 2*time.Minute {
			t.Errorf("seed %d: schedule lasts %v", seed, total)
		}
		for _, s := range Schedule(seed, kinds[:len(kinds)-1], 2*time.Minute, 3, time.Second, 3*time.Second) {
			if s.Inner != nil {
				t.Fatalf("seed %d: %v nested without overlap listed", seed, s)
			}
		}
	}
	if len(nested) < 6 {
		t.Errorf("only %d kinds of pairs in 20 seeds: %v", len(nested), nested)
	}
	t.Logf("pairs: %v", nested)
}

// TestScheduleDiskKinds: the snapshot, disk and client-pause steps.
func TestScheduleDiskKinds(t *testing.T) {
	ttl := 3 * time.Second
	seen := map[string]bool{}
	for seed := range int64(10) {
		for _, s := range Schedule(seed, []string{NemesisSnapshot, NemesisDisk, NemesisClientPause}, time.Minute, 3, time.Second, ttl) {
			seen[s.Variant] = true
			switch s.Kind {
			case NemesisSnapshot:
				if s.Duration < snapshotLag+snapshotDown+time.Second && s.Variant == "kill-installing" {
					t.Errorf("%v: too short to let the leader compact past the follower", s)
				}
			case NemesisClientPause:
				if s.Delay < 2*ttl || s.Duration <= s.Delay {
					t.Errorf("%v: the pause must outlast the lease (2 x TTL) within the window", s)
				}
			case NemesisDisk:
				if s.Duration < time.Second || s.Inner != nil {
					t.Errorf("%v", s)
				}
			}
		}
	}
	for _, v := range []string{"kill-writing", "kill-installing", "lose-unsynced-leader", "lose-unsynced-follower", "io-errors-leader", "io-errors-follower", "locker"} {
		if !seen[v] {
			t.Errorf("variant %s never scheduled", v)
		}
	}
	if !slices.Contains(AllNemeses, NemesisOverlap) || !slices.Contains(AllNemeses, NemesisDisk) {
		t.Error("AllNemeses lacks the new kinds")
	}
}
