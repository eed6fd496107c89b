package chaos

import (
	"reflect"
	"testing"
	"time"
)

func TestScheduleIsAFunctionOfTheSeed(t *testing.T) {
	a := Schedule(7, AllNemeses, time.Minute, 3, time.Second, 3*time.Second)
	b := Schedule(7, AllNemeses, time.Minute, 3, time.Second, 3*time.Second)
	c := Schedule(8, AllNemeses, time.Minute, 3, time.Second, 3*time.Second)
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds gave the same schedule")
	}
	var total time.Duration
	for _, s := range a {
		total += s.Gap + s.Duration
		if s.Kind == NemesisClock && (s.Rate < 0.991 || s.Rate > 1.009) {
			t.Errorf("clock drift %v is outside the 0.9%% budget", s.Rate)
		}
	}
	if total > time.Minute {
		t.Errorf("schedule lasts %v, longer than the run", total)
	}
}

// TestTransferSchedule: handovers come often enough that a lease
// checkpointed at one still expires on the leader of the next, and the
// follower drift stays within what the extension (an election timeout)
// absorbs while clearly exceeding the client's 2% margin.
func TestTransferSchedule(t *testing.T) {
	ttl, election := 3*time.Second, time.Second
	steps := Schedule(3, []string{NemesisTransfer}, time.Minute, 3, election, ttl)
	if len(steps) < 20 {
		t.Fatalf("%d handovers in a minute, want a step every few seconds", len(steps))
	}
	fast := 0
	for _, s := range steps {
		if s.Gap+s.Duration > ttl*3/4+300*time.Millisecond {
			t.Errorf("%v after a %v gap: the next handover comes too late", s, s.Gap)
		}
		switch s.Variant {
		case "fast-followers":
			fast++
			if s.Rate < 1.15 || s.Rate > 1.2 {
				t.Errorf("%v: follower rate outside 1.15-1.20", s)
			}
			// The drift a new leader can inherit: the fast window plus one
			// lessor wake-up (250 ms) into its term.
			if lost := time.Duration(float64(s.Duration+250*time.Millisecond) * (s.Rate - 1)); lost >= election/2 {
				t.Errorf("%v: up to %v of drift, too close to the %v extension", s, lost, election)
			}
		case "handover":
			if s.Rate != 0 || s.Duration != 0 {
				t.Errorf("%v: a plain handover has no drift and no window of its own", s)
			}
		default:
			t.Errorf("unknown transfer variant %q", s.Variant)
		}
	}
	if fast == 0 || fast == len(steps) {
		t.Errorf("%d of %d steps drift followers; want both variants", fast, len(steps))
	}
}

func TestPartitionRules(t *testing.T) {
	nodes := make([]*NodeProc, 5)
	for i := range nodes {
		nodes[i] = &NodeProc{Index: i}
	}
	in, out, _ := partitionRules("ring", nodes[0], nodes[1:], nodes)
	for i := range nodes {
		// In a ring of five each node keeps its two neighbours: a
		// majority with itself, but no two nodes see the same majority.
		if len(in[i]) != 2 || len(out[i]) != 2 {
			t.Errorf("ring: node %d blocks in %v out %v, want two each", i, in[i], out[i])
		}
	}
	in, out, _ = partitionRules("oneway-leader", nodes[0], nodes[1:], nodes)
	if len(out[0]) != 4 || len(in[0]) != 0 {
		t.Errorf("one-way: leader blocks in %v out %v", in[0], out[0])
	}
	in, _, _ = partitionRules("isolate-leader", nodes[2], []*NodeProc{nodes[0], nodes[1], nodes[3], nodes[4]}, nodes)
	if len(in[2]) != 4 || len(in[0]) != 1 {
		t.Errorf("isolate: leader blocks %v, node 0 blocks %v", in[2], in[0])
	}
}

func TestFencedResourceRejectsOlderTokens(t *testing.T) {
	f := &fencedResource{max: map[string]uint64{}}
	if !f.write("k", 5) || !f.write("k", 5) || !f.write("k", 9) || f.write("k", 7) || !f.write("j", 1) {
		t.Fatal("the fenced resource must accept tokens >= the highest seen, per key, and nothing else")
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	path := t.TempDir() + "/history.jsonl"
	ops := number(cleanHistory())
	faults := []Fault{{ID: 0, Kind: NemesisKill, Detail: "kill/leader", Targets: []string{"n1"}, Start: 1, End: 2}}
	if err := WriteJSONL(path, ops, faults); err != nil {
		t.Fatal(err)
	}
	gotOps, gotFaults, err := ReadJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotOps, ops) || !reflect.DeepEqual(gotFaults, faults) {
		t.Fatalf("round trip changed the history")
	}
}
