package chaos

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability model. The history is split into independent parts,
// one per lease ("lease:<id>": grant, renew, TimeToLive, revoke) and one per
// item key ("item:<key>": attach, detach, get, and the revokes of leases that
// attached the key), so porcupine's search stays small. Leases expire on their
// own, so the model is nondeterministic: whenever a lease may be alive it may
// also have become gone, and an item held by a lease may have become free.
// What remains checkable is what matters: nothing comes back after it was
// seen gone or revoked, reads never go back to an older revision, and
// revisions grow.

// linIn is a porcupine input: an op, and which part it is checked in.
type linIn struct {
	Part string
	Op   Op
}

// linState is one concrete state of a part.
type linState struct {
	Lease  int8   // lease parts: 0 never granted, 1 alive, 2 gone
	Holder int64  // item parts: the lease holding the key, 0 if free
	Rev    uint64 // revision of the current attach
	Wild   bool   // held after an attach of unknown outcome: revision unknown
	Max    uint64 // highest revision seen for the key
}

const (
	leaseNever int8 = iota
	leaseAlive
	leaseGone
)

// closeStates adds the states that expiry can reach at any moment.
func closeStates(in []linState) []any {
	var out []any
	seen := map[linState]bool{}
	add := func(s linState) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range in {
		add(s)
		if s.Lease == leaseAlive {
			add(linState{Lease: leaseGone})
		}
		if s.Holder != 0 {
			add(linState{Max: max(s.Max, s.Rev)})
		}
	}
	return out
}

func stepLease(s linState, op Op) []linState {
	alive := s.Lease == leaseAlive
	switch op.Kind {
	case OpGrant:
		switch op.Status {
		case StatusOK:
			if alive {
				return nil
			}
			return []linState{{Lease: leaseAlive}}
		case StatusInfo:
			if alive {
				return []linState{s}
			}
			return []linState{s, {Lease: leaseAlive}}
		}
	case OpRenew, OpTTL:
		if op.Status != StatusOK {
			return []linState{s}
		}
		if op.Found != alive {
			return nil
		}
		if alive {
			return []linState{s}
		}
		return []linState{{Lease: leaseGone}}
	case OpRevoke:
		switch op.Status {
		case StatusOK:
			if op.Found != alive {
				return nil
			}
			return []linState{{Lease: leaseGone}}
		case StatusInfo:
			return []linState{s, {Lease: leaseGone}}
		}
	}
	return []linState{s}
}

func stepItem(s linState, op Op) []linState {
	free := linState{Max: max(s.Max, s.Rev)}
	switch op.Kind {
	case OpAttach:
		switch op.Status {
		case StatusOK:
			switch {
			case s.Holder == op.Lease && (s.Rev == op.Rev || (s.Wild && op.Rev > s.Max)):
			case s.Holder == 0 && op.Rev > s.Max:
			default:
				return nil
			}
			return []linState{{Holder: op.Lease, Rev: op.Rev, Max: max(s.Max, op.Rev)}}
		case StatusInfo:
			if s.Holder == 0 {
				return []linState{s, {Holder: op.Lease, Wild: true, Max: s.Max}}
			}
		}
	case OpGet:
		if op.Status != StatusOK {
			break
		}
		if !op.Found {
			if s.Holder != 0 {
				return nil
			}
			return []linState{s}
		}
		if s.Holder != op.Holder || !(s.Rev == op.Rev || (s.Wild && op.Rev > s.Max)) {
			return nil
		}
		return []linState{{Holder: op.Holder, Rev: op.Rev, Max: max(s.Max, op.Rev)}}
	case OpDetach, OpRevoke:
		if s.Holder != op.Lease || op.Status == StatusFail {
			break
		}
		if op.Status == StatusInfo {
			return []linState{s, free}
		}
		return []linState{free}
	}
	return []linState{s}
}

func linModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			parts := map[string][]porcupine.Operation{}
			for _, o := range h {
				p := o.Input.(linIn).Part
				parts[p] = append(parts[p], o)
			}
			out := make([][]porcupine.Operation, 0, len(parts))
			for _, k := range sortedKeys(parts) {
				out = append(out, parts[k])
			}
			return out
		},
		Init: func() []any { return []any{linState{}} },
		Step: func(state, input, _ any) []any {
			s, in := state.(linState), input.(linIn)
			if strings.HasPrefix(in.Part, "lease:") {
				return closeStates(stepLease(s, in.Op))
			}
			return closeStates(stepItem(s, in.Op))
		},
		Equal: func(a, b any) bool { return a.(linState) == b.(linState) },
		DescribeOperation: func(input, _ any) string {
			return describeOp(input.(linIn).Op)
		},
		DescribeState: func(state any) string {
			s := state.(linState)
			if s.Holder != 0 {
				return fmt.Sprintf("held by %d rev %d (max %d)", s.Holder, s.Rev, s.Max)
			}
			return fmt.Sprintf("lease %s / item free (max rev %d)", [...]string{"never", "alive", "gone"}[s.Lease], s.Max)
		},
	}
	return nm.ToModel()
}

func describeOp(op Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", op.Kind, op.Status)
	if op.Lease != 0 {
		fmt.Fprintf(&b, " lease=%d", op.Lease)
	}
	if op.Key != "" {
		fmt.Fprintf(&b, " key=%s", op.Key)
	}
	if op.Kind == OpTTL || op.Kind == OpRenew || op.Kind == OpGet || op.Kind == OpRevoke {
		fmt.Fprintf(&b, " found=%v", op.Found)
	}
	if op.Holder != 0 || op.Rev != 0 {
		fmt.Fprintf(&b, " holder=%d rev=%d", op.Holder, op.Rev)
	}
	if op.Err != "" {
		fmt.Fprintf(&b, " (%s)", op.Err)
	}
	return b.String()
}

// linOperations turns the history into porcupine operations, one per part
// an op belongs to. Ops of unknown outcome may take effect at any later
// time, so they never return.
func linOperations(ops []Op) []porcupine.Operation {
	keysOf := map[int64]map[string]bool{}
	for _, op := range ops {
		if op.Kind == OpAttach && op.Status != StatusFail {
			if keysOf[op.Lease] == nil {
				keysOf[op.Lease] = map[string]bool{}
			}
			keysOf[op.Lease][op.Key] = true
		}
	}
	// Lease parts only for leases granted in the history: the final read
	// also lists leases whose grant had an unknown outcome (final-read
	// judges those).
	granted := map[int64]bool{}
	for _, op := range ops {
		if op.Kind == OpGrant && op.Status == StatusOK {
			granted[op.Lease] = true
		}
	}
	var out []porcupine.Operation
	add := func(part string, op Op) {
		if strings.HasPrefix(part, "lease:") && !granted[op.Lease] {
			return
		}
		if op.Status == StatusFail || part == "lease:0" {
			return // a definite failure changed nothing
		}
		ret := op.Complete
		if op.Status == StatusInfo {
			ret = math.MaxInt64 / 2
		}
		out = append(out, porcupine.Operation{ClientId: op.Process, Input: linIn{Part: part, Op: op}, Call: op.Invoke, Output: op, Return: ret})
	}
	for _, op := range ops {
		switch op.Kind {
		case OpGrant, OpRenew, OpTTL:
			add(fmt.Sprintf("lease:%d", op.Lease), op)
		case OpRevoke:
			add(fmt.Sprintf("lease:%d", op.Lease), op)
			keys := sortedKeys(keysOf[op.Lease])
			for _, k := range keys {
				add("item:"+k, op)
			}
		case OpAttach, OpDetach, OpGet:
			add("item:"+op.Key, op)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// checkLinearizable runs porcupine over the history and, if reportPath is
// set, writes its visualization with the fault windows marked.
func checkLinearizable(ops []Op, faults []Fault, timeout time.Duration, reportPath string) Verdict {
	hist := linOperations(ops)
	model := linModel()
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	n := len(hist)
	var v Verdict
	switch res {
	case porcupine.Ok:
		v = Verdict{OK: true, Judged: n, Detail: fmt.Sprintf("%d operations in %d parts are linearizable", n, len(linModel().Partition(hist)))}
	case porcupine.Illegal:
		v = Verdict{OK: false, Judged: n, Detail: "not linearizable: " + illegalParts(model, hist) + " (see report.html)"}
	default:
		// Neither a pass nor a caught bug: the run fails without evidence
		// either way.
		return Verdict{OK: false, Unknown: true, Judged: n, Detail: fmt.Sprintf("unknown: porcupine gave up after %v on %d operations", timeout, n)}
	}
	if reportPath != "" {
		var anns []porcupine.Annotation
		for _, f := range faults {
			anns = append(anns, porcupine.Annotation{
				Tag: "nemesis", Start: f.Start, End: f.End,
				Description: f.Kind, Details: f.Detail + " " + strings.Join(f.Targets, ","),
				BackgroundColor: "#f7c6c6",
			})
		}
		info.AddAnnotations(anns)
		if err := porcupine.VisualizePath(model, info, reportPath); err != nil {
			v.Detail += fmt.Sprintf(" (visualization failed: %v)", err)
		}
	}
	return v
}

// illegalParts names the parts that fail on their own.
func illegalParts(model porcupine.Model, hist []porcupine.Operation) string {
	var bad []string
	for _, part := range model.Partition(hist) {
		m := model
		m.Partition = nil
		if porcupine.CheckOperationsTimeout(m, part, 10*time.Second) == porcupine.Illegal {
			bad = append(bad, part[0].Input.(linIn).Part)
		}
		if len(bad) == maxReported {
			break
		}
	}
	return strings.Join(bad, ", ")
}
