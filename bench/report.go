package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Results is everything one run produced; it is written as JSON as is.
type Results struct {
	Started  string            `json:"started"`
	Seconds  float64           `json:"seconds"`
	Commit   string            `json:"commit"`
	Machine  map[string]string `json:"machine"`
	Settings settings          `json:"settings"`
	Notes    []string          `json:"notes"`

	Throughput []Pair `json:"throughput"`
	Expiry     struct{ LC, Etcd ExpiryResult }
	Failover   struct{ LC, Etcd FailoverResult }
	// Sizes holds the memory and scale phases at each table size, smallest
	// first.
	Sizes   []TableSize `json:"table_sizes"`
	Restart struct{ LC, Etcd RestartResult }
	Replay  struct{ LC, Etcd RestartResult }
	// Hops splits one client's grant latency into its hops (leasecluster only).
	Hops *HopsResult `json:"hops,omitempty"`

	Targets  []Target          `json:"targets"`
	Profiles map[string]string `json:"profiles,omitempty"` // workload -> pprof -top of the leasecluster leader
}

// Pair is one throughput workload on both systems with the ratios
// leasecluster / etcd.
type Pair struct {
	Workload string     `json:"workload"`
	LC       LoadResult `json:"leasecluster"`
	Etcd     LoadResult `json:"etcd"`
	Thr      float64    `json:"throughput_ratio"`
	P50      float64    `json:"p50_ratio"`
	P99      float64    `json:"p99_ratio"`
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round3(a / b)
}

func pairOf(w string, lc, et LoadResult) Pair {
	return Pair{Workload: w, LC: lc, Etcd: et, Thr: ratio(lc.Throughput, et.Throughput), P50: ratio(lc.P50Ms, et.P50Ms), P99: ratio(lc.P99Ms, et.P99Ms)}
}

// Target is one of the targets: met, missed, or not run (a partial
// run left out the phase or a system it needs; then Met is false too).
type Target struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Got      string `json:"got"`
	Met      bool   `json:"met"`
	NotRun   bool   `json:"not_run,omitempty"`
	Workload string `json:"workload,omitempty"` // throughput workload whose profile explains a miss
}

// status is the target's verdict as the table prints it.
func (t Target) status() string {
	switch {
	case t.NotRun:
		return "not run"
	case t.Met:
		return "met"
	}
	return "MISSED"
}

// revoked describes when an expiry run had every lease revoked.
func revoked(x ExpiryResult) string {
	if x.Error != "" {
		return "not all revoked (" + x.Error + ")"
	}
	return fmt.Sprintf("%.0f ms", x.RevokedAfterMs)
}

func profilePath(dir, workload string) string {
	return filepath.Join(dir, strings.NewReplacer(" ", "_", "=", "", "(", "", ")", "").Replace(workload)+".pprof")
}

// attachProfiles adds `go tool pprof -top` of the leader's profile for every
// throughput workload whose target was missed.
func (r *Results) attachProfiles(dir string) {
	for _, t := range r.Targets {
		if t.Met || t.Workload == "" {
			continue
		}
		path := profilePath(dir, t.Workload)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", path).Output()
		if err != nil {
			continue
		}
		if r.Profiles == nil {
			r.Profiles = map[string]string{}
		}
		r.Profiles[t.Workload] = string(out)
	}
}

func machineInfo() map[string]string {
	m := map[string]string{"nproc": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				m["memory"] = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	return m
}

func gitCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// table renders the results as Markdown (also the stdout table): a section
// for each phase the run included, then the targets.
func (r *Results) table(w io.Writer) {
	if r.Settings.TLS {
		fmt.Fprintf(w, "Both systems with mutual TLS on every client and peer connection (-tls).\n\n")
	}
	if r.Hops != nil {
		hopsTable(w, *r.Hops)
	}
	if r.phaseRan(phaseThroughput) {
		r.throughputTables(w)
	}
	if r.phaseRan(phaseFailover) {
		failoverTable(w, "Failover (SIGKILL of the leader)", r.Failover.LC, r.Failover.Etcd)
	}
	if r.phaseRan(phaseExpiry) {
		r.expiryTable(w)
	}
	if r.phaseRan(phaseMemory) {
		r.memoryTable(w)
	}
	if r.phaseRan(phaseScale) {
		for _, ts := range r.Sizes {
			failoverTable(w, fmt.Sprintf("Failover with %d leases in the cluster", ts.Leases), ts.Scale.LC, ts.Scale.Etcd)
		}
	}
	if r.phaseRan(phaseRestart) {
		restartTable(w, fmt.Sprintf("Follower restart with %d leases (SIGKILL, start again on its data dir)", r.Settings.ScaleLeases), r.Restart.LC, r.Restart.Etcd)
	}
	if r.phaseRan(phaseReplay) {
		restartTable(w, fmt.Sprintf("Follower restart replaying a long log (%d entries or more, no snapshot)", r.Settings.ReplayEntries), r.Replay.LC, r.Replay.Etcd)
	}
	fmt.Fprintf(w, "\n## Targets\n\n| target | want | got | |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, t.status())
	}
}

// throughputTables renders the throughput workloads: rates and latencies,
// then CPU per operation.
func (r *Results) throughputTables(w io.Writer) {
	fmt.Fprintf(w, "## Throughput and latency (ratio = leasecluster / etcd)\n\n")
	fmt.Fprintf(w, "| workload | leasecluster ops/s | p50 ms | p99 ms | etcd ops/s | p50 ms | p99 ms | ratio ops/s | ratio p50 | ratio p99 |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Throughput {
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", p.Workload,
			p.LC.Throughput, p.LC.P50Ms, p.LC.P99Ms, p.Etcd.Throughput, p.Etcd.P50Ms, p.Etcd.P99Ms, p.Thr, p.P50, p.P99)
	}
	var errs []string
	for _, p := range r.Throughput {
		for _, x := range []struct {
			sys string
			r   LoadResult
		}{{"leasecluster", p.LC}, {"etcd", p.Etcd}} {
			if x.r.Errors > 0 || x.r.Note != "" {
				errs = append(errs, fmt.Sprintf("- %s, %s: %d errors %s %s", p.Workload, x.sys, x.r.Errors, x.r.FirstError, x.r.Note))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(errs, "\n"))
	}
	fmt.Fprintf(w, "\n## CPU per operation (µs, over the measured interval)\n\n")
	fmt.Fprintf(w, "Nodes: the CPU time of all of a system's node processes; load generator: the benchmark process's while it drove that system (it shares the machine's cores with both clusters).\n\n")
	fmt.Fprintf(w, "| workload | leasecluster nodes | etcd nodes | ratio | load generator, leasecluster | load generator, etcd |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Throughput {
		lc, et := cpuPerOpUs(p.LC.ServerCPUSeconds, p.LC.Ops), cpuPerOpUs(p.Etcd.ServerCPUSeconds, p.Etcd.Ops)
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.2f | %.1f | %.1f |\n", p.Workload, lc, et, ratio(lc, et),
			cpuPerOpUs(p.LC.LoadCPUSeconds, p.LC.Ops), cpuPerOpUs(p.Etcd.LoadCPUSeconds, p.Etcd.Ops))
	}
}

// failoverTable renders one failover (or the scale phase's worst) for both
// systems.
func failoverTable(w io.Writer, title string, lc, et FailoverResult) {
	fmt.Fprintf(w, "\n## %s\n\n| | leasecluster | etcd |\n|---|---:|---:|\n", title)
	row := func(name string, a, b any) { fmt.Fprintf(w, "| %s | %v | %v |\n", name, a, b) }
	row("kept-alive leases (TTL 3 s, renewed every TTL/3)", lc.KeptAlive, et.KeptAlive)
	row("other leases in the cluster", lc.BackgroundLeases, et.BackgroundLeases)
	row("killed leader", lc.KilledNode, et.KilledNode)
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	row("first renewal after kill, ms", f0(lc.ResumeFirstMs), f0(et.ResumeFirstMs))
	row("every lease renewed again, ms", f0(lc.ResumeAllMs), f0(et.ResumeAllMs))
	row("longest gap between renewals of one lease, ms", f0(lc.MaxGapMs), f0(et.MaxGapMs))
	row("leases not renewed again", lc.NotResumed, et.NotResumed)
	row("leases lost", lc.Lost, et.Lost)
	if lc.IdleTTLSec > 0 {
		row("idle lease: TTL s / unrenewed for s", fmt.Sprintf("%.0f / %.1f", lc.IdleTTLSec, lc.IdleForSec), fmt.Sprintf("%.0f / %.1f", et.IdleTTLSec, et.IdleForSec))
		row("idle lease remaining before / after kill, ms", fmt.Sprintf("%.0f / %.0f", lc.IdleBeforeMs, lc.IdleAfterMs), fmt.Sprintf("%.0f / %.0f", et.IdleBeforeMs, et.IdleAfterMs))
		row("idle lease remaining-TTL jump, ms (0 = kept, about the idle time = reset)", f0(lc.IdleJumpMs), f0(et.IdleJumpMs))
	}
	if lc.ProbeFirstOKMs != 0 || et.ProbeFirstOKMs != 0 {
		row("probe (renewal every 5 ms to the leader): first ack after kill, ms", f0(lc.ProbeFirstOKMs), f0(et.ProbeFirstOKMs))
		row("probe: longest renewal latency in the 10 s after kill, ms", fmt.Sprintf("%.1f", lc.ProbeMaxStallMs), fmt.Sprintf("%.1f", et.ProbeMaxStallMs))
	}
	if lc.Error != "" || et.Error != "" {
		row("error", lc.Error, et.Error)
	}
}

// expiryTable renders the expiry storm on both systems.
func (r *Results) expiryTable(w io.Writer) {
	e := r.Expiry
	fmt.Fprintf(w, "\n## Expiry\n\n| | leasecluster | etcd |\n|---|---:|---:|\n")
	fmt.Fprintf(w, "| leases due within one second | %d | %d |\n| spread of due times, ms | %.0f | %.0f |\n", e.LC.Leases, e.Etcd.Leases, e.LC.DueSpreadMs, e.Etcd.DueSpreadMs)
	fmt.Fprintf(w, "| all revoked after the last due time, ms | %.0f | %.0f |\n| lease-count poll gap (resolution), ms | %.0f | %.0f |\n", e.LC.RevokedAfterMs, e.Etcd.RevokedAfterMs, e.LC.PollResolutionM, e.Etcd.PollResolutionM)
	fmt.Fprintf(w, "| renewal p50 / p99 during the storm (64 leases every 100 ms), ms | %.2f / %.2f | %.2f / %.2f |\n", e.LC.RenewP50Ms, e.LC.RenewP99Ms, e.Etcd.RenewP50Ms, e.Etcd.RenewP99Ms)
	if e.LC.Error != "" || e.Etcd.Error != "" {
		fmt.Fprintf(w, "| error | %s | %s |\n", e.LC.Error, e.Etcd.Error)
	}
}

// memoryTable renders the leader's RSS growth at each table size: the
// leader's VmRSS then against its own with an empty table.
func (r *Results) memoryTable(w io.Writer) {
	fmt.Fprintf(w, "\n## Leader memory (VmRSS growth from the empty table; grants %d concurrent)\n\n", r.Settings.FillClients)
	fmt.Fprintf(w, "| leases in the table | leasecluster leader, MiB | per 100,000 leases | grants/s | etcd leader, MiB | per 100,000 leases | grants/s | ratio per lease |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var errs []string
	for _, ts := range r.Sizes {
		lc, et := ts.Memory.LC, ts.Memory.Etcd
		fmt.Fprintf(w, "| %d | %.0f -> %.0f | %.1f | %.0f | %.0f -> %.0f | %.1f | %.0f | %.2f |\n", ts.Leases,
			lc.RSSBeforeMiB, lc.RSSAfterMiB, lc.PerHundredKMiB, lc.GrantsPerSecond,
			et.RSSBeforeMiB, et.RSSAfterMiB, et.PerHundredKMiB, et.GrantsPerSecond, ratio(lc.PerHundredKMiB, et.PerHundredKMiB))
		for sys, e := range map[string]string{"leasecluster": lc.Error, "etcd": et.Error} {
			if e != "" {
				errs = append(errs, fmt.Sprintf("- %d leases, %s: %s", ts.Leases, sys, e))
			}
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		fmt.Fprintf(w, "\n%s\n", strings.Join(errs, "\n"))
	}
}

// restartTable renders a follower restart on both systems.
func restartTable(w io.Writer, title string, lc, et RestartResult) {
	fmt.Fprintf(w, "\n## %s\n\n| | leasecluster | etcd |\n|---|---:|---:|\n", title)
	row := func(name string, a, b any) { fmt.Fprintf(w, "| %s | %v | %v |\n", name, a, b) }
	row("leases in the table", lc.Leases, et.Leases)
	row("leader's commit index at the kill", lc.LogIndex, et.LogIndex)
	row("restarted follower", lc.Node, et.Node)
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	row("first status answer after the start, ms", f0(lc.AnswerMs), f0(et.AnswerMs))
	row("ready after the start (that index applied, a linearizable read served), ms", f0(lc.ReadyMs), f0(et.ReadyMs))
	row("its VmRSS when ready, MiB", f0(lc.RSSMiB), f0(et.RSSMiB))
	if lc.Error != "" || et.Error != "" {
		row("error", lc.Error, et.Error)
	}
}

// write prints the table and stores results/<date>.json and results/latest.md.
func (r *Results) write(stdout io.Writer, dir string) error {
	r.table(stdout)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	name := time.Now().Format("2006-01-02T15-04-05")
	if r.Settings.Quick {
		name += "-quick"
	}
	if r.Settings.TLS {
		name += "-tls"
	}
	if r.Settings.Partial() {
		name += "-partial"
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	mode := "full"
	if r.Settings.Quick {
		mode = "quick (-quick)"
	}
	latest, flags := "latest.md", map[bool]string{true: " -quick"}[r.Settings.Quick]
	if r.Settings.TLS {
		// A TLS run is compared with the plaintext one, never replaces it.
		mode, latest, flags = mode+", TLS (-tls)", "latest-tls.md", flags+" -tls"
	}
	fmt.Fprintf(&b, "# leasecluster vs etcd lease benchmark\n\n")
	fmt.Fprintf(&b, "- run: %s, %s mode, %.0f s (`cd bench && go run .%s`); JSON: `%s.json`\n", r.Started, mode, r.Seconds, flags, name)
	fmt.Fprintf(&b, "- commit: %s\n", r.Commit)
	fmt.Fprintf(&b, "- machine: %s CPUs (%s), %s memory, Linux %s, %s\n", r.Machine["nproc"], r.Machine["cpu"], r.Machine["memory"], r.Machine["kernel"], r.Machine["go"])
	fmt.Fprintf(&b, "- settings: %v per workload after %v warm-up; %d renewal streams per keepalive workload; %d client objects per system; expiry %d leases; memory/scale/restart %v leases; replay %d log entries; failover %d leases TTL %v, idle lease %v unrenewed for %v\n\n",
		r.Settings.Dur, r.Settings.Warm, r.Settings.KAStreams, r.Settings.Clients, r.Settings.ExpiryLeases, r.Settings.TableSizes, r.Settings.ReplayEntries, r.Settings.FailoverLeases, r.Settings.FailoverTTL, r.Settings.IdleTTL, r.Settings.IdleFor)
	fmt.Fprintf(&b, "## Method\n\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	fmt.Fprintln(&b)
	r.table(&b)
	if len(r.Profiles) > 0 {
		fmt.Fprintf(&b, "\n## CPU profiles of the leasecluster leader (workloads that missed a target)\n")
		for _, p := range r.Throughput {
			if t, ok := r.Profiles[p.Workload]; ok {
				fmt.Fprintf(&b, "\n### %s\n\n```\n%s```\n", p.Workload, t)
			}
		}
	}
	if r.Settings.Partial() {
		// A run of some phases or one system is for investigation: it keeps
		// its JSON but leaves the last full comparison in latest.md.
		fmt.Fprintf(os.Stderr, "partial run (phases %s, systems %s): wrote %s.json, left latest.md alone\n",
			strings.Join(r.Settings.Phases, ","), strings.Join(r.Settings.Systems, ","), name)
		return nil
	}
	return os.WriteFile(filepath.Join(dir, latest), []byte(b.String()), 0o644)
}
