package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TableSize is the memory and scale phases at one table size, both systems.
type TableSize struct {
	Leases int `json:"leases"`
	Memory struct{ LC, Etcd MemoryResult }
	// ScaleRuns holds every kill of the scale phase; Scale is the worst.
	ScaleRuns struct{ LC, Etcd []FailoverResult }
	Scale     struct{ LC, Etcd FailoverResult }
}

// parseSizes parses -table-sizes: lease counts, ascending, no repeats.
func parseSizes(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "_", ""))
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a lease count", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no table size")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// tableSizes is the sizes the table phases run at: every one of
// set.TableSizes for the memory and scale phases, only the largest when
// the run has neither and restarts a follower on it.
func (set settings) tableSizes() []int {
	if !set.Phases.has(phaseMemory) && !set.Phases.has(phaseScale) {
		return set.TableSizes[len(set.TableSizes)-1:]
	}
	return set.TableSizes
}

// tableRun is one system's figures from the table phases.
type tableRun struct {
	memory  []MemoryResult // per size
	scale   [][]FailoverResult
	restart RestartResult
}

// tablePhases runs, on one system, the phases that need a large lease table.
// At each table size in turn, smallest first, it grants leases until the
// table holds that many and measures the leader's memory (memory), then
// kills the leader on that table (scale; the killed node is restarted, and
// caught up, before the table grows). On the largest table it then restarts
// a follower (restart). Its nodes are stopped afterwards, so that a million
// leases in one system's processes do not compete with the other's.
func tablePhases(ctx context.Context, s system, set settings, pprof bool, profDir string) (tr tableRun) {
	defer stopNodes(s.nodes())
	base := baseline(s)
	had, killed := 0, -1
	sizes := set.tableSizes()
	for _, n := range sizes {
		if err := restart(ctx, s, killed); err != nil {
			fmt.Fprintf(os.Stderr, "  %s: %v: no larger table\n", s.name(), err)
			return tr
		}
		fmt.Fprintf(os.Stderr, "%s: memory with %d leases ...\n", s.name(), n)
		m := memory(ctx, s, base, had, n, set.FillClients)
		tr.memory = append(tr.memory, m)
		if m.GrantsPerSecond > 0 { // every grant succeeded
			had = n
		}
		if set.Phases.has(phaseScale) {
			fmt.Fprintf(os.Stderr, "%s: failover with %d leases in the cluster ...\n", s.name(), n)
			var runs []FailoverResult
			runs, killed = scale(ctx, s, set, n, len(sizes) > 1, pprof, profDir)
			tr.scale = append(tr.scale, runs)
		}
		if had != n {
			return tr // the table did not fill: no larger one
		}
	}
	if set.Phases.has(phaseRestart) {
		if err := restart(ctx, s, killed); err != nil {
			tr.restart.Error = err.Error()
			return tr
		}
		fmt.Fprintf(os.Stderr, "%s: restart of a follower with %d leases ...\n", s.name(), had)
		tr.restart = restartFollower(ctx, s, had)
	}
	return tr
}

// scale runs set.ScaleKills leader kills on a table of leases leases,
// restarting the killed node between them; it returns the runs and the node
// the last one killed (still down). named: the profiles and probe files
// name the table size too.
func scale(ctx context.Context, s system, set settings, leases int, named bool, pprof bool, profDir string) ([]FailoverResult, int) {
	var runs []FailoverResult
	killed := -1
	for k := range set.ScaleKills {
		if err := restart(ctx, s, killed); err != nil {
			fmt.Fprintf(os.Stderr, "  %s: %v\n", s.name(), err)
			break
		}
		prefix := fmt.Sprintf("scale%d", k+1)
		if named {
			prefix = fmt.Sprintf("scale-%d-%d", leases, k+1)
		}
		sp := failoverParams{keptAlive: set.FailoverLeases, ttl: set.FailoverTTL, observe: set.FailoverTTL + time.Second}
		if lc, ok := s.(*lcSystem); ok && pprof {
			sp.afterKill = survivorProfiler(lc, profDir, prefix)
		}
		sp.probeCSV = filepath.Join(profDir, fmt.Sprintf("%s-%s-probe.csv", prefix, s.name()))
		var r FailoverResult
		r, killed = failover(ctx, s, sp, true)
		r.BackgroundLeases = leases
		runs = append(runs, r)
	}
	return runs, killed
}

// addTableRun files one system's table figures under their sizes.
func (r *Results) addTableRun(lc bool, tr tableRun) {
	for i, m := range tr.memory {
		at := slices.IndexFunc(r.Sizes, func(t TableSize) bool { return t.Leases == m.Leases })
		if at < 0 {
			at = len(r.Sizes)
			r.Sizes = append(r.Sizes, TableSize{Leases: m.Leases})
		}
		ts := &r.Sizes[at]
		var runs []FailoverResult
		if i < len(tr.scale) {
			runs = tr.scale[i]
		}
		if lc {
			ts.Memory.LC, ts.ScaleRuns.LC, ts.Scale.LC = m, runs, worstFailover(runs)
		} else {
			ts.Memory.Etcd, ts.ScaleRuns.Etcd, ts.Scale.Etcd = m, runs, worstFailover(runs)
		}
	}
	slices.SortFunc(r.Sizes, func(a, b TableSize) int { return a.Leases - b.Leases })
	if lc {
		r.Restart.LC = tr.restart
	} else {
		r.Restart.Etcd = tr.restart
	}
}
