// Command bench runs leasecluster and etcd's lease subsystem side by side:
// a three-node leasecluster (`leasecluster serve` processes built from ../)
// and a three-node etcd v3.6 (./etcdnode processes, each an embed.Etcd), every node its own OS process on 127.0.0.1, fsync on, default
// settings. The same load generator and concurrency drive both, and the run
// reports throughput and latency of each workload, failover, mass expiry,
// memory per lease and failover with a large lease table, as ratios
// leasecluster / etcd against the project's targets.
//
//	cd bench && go run . [-quick]
//
// It writes results/<date>.json and results/latest.md. It is a module of its
// own so that etcd's dependencies never enter the main module.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// settings are the knobs of one run; -quick scales the big phases down.
type settings struct {
	Quick          bool          `json:"quick"`
	Warm           time.Duration `json:"warmup_ns"`
	Dur            time.Duration `json:"duration_ns"`
	ExpiryLeases   int           `json:"expiry_leases"`
	ScaleLeases    int           `json:"scale_leases"`              // the largest of TableSizes
	TableSizes     []int         `json:"table_sizes"`               // the memory and scale phases run at each
	ReplayEntries  int           `json:"replay_log_entries"`        // the replay phase's log grows by at least this many entries
	ReplaySnapshot uint64        `json:"replay_snapshot_threshold"` // log entries between snapshots in the replay phase's clusters
	FailoverLeases int           `json:"failover_kept_alive_leases"`
	FailoverTTL    time.Duration `json:"failover_ttl_ns"`
	IdleTTL        time.Duration `json:"idle_lease_ttl_ns"`
	IdleFor        time.Duration `json:"idle_for_ns"`
	KAStreams      int           `json:"keepalive_streams"`
	Clients        int           `json:"client_objects_per_system"`
	Profile        bool          `json:"profile_leader"`
	FillClients    int           `json:"fill_clients"`
	Passes         int           `json:"throughput_passes"`
	ScaleKills     int           `json:"scale_kills"`
	LCLogLevel     string        `json:"leasecluster_log_level"`
	TLS            bool          `json:"tls"`
	Phases         nameSet       `json:"phases"`
	Systems        nameSet       `json:"systems"`
}

// Partial reports whether the run left out a phase or a system: its report
// is not the project's benchmark result and does not replace latest.md.
func (s settings) Partial() bool {
	return len(s.Phases) < len(allPhases) || len(s.Systems) < len(allSystems)
}

func main() {
	quick := flag.Bool("quick", false, "scaled-down run (a few minutes)")
	profile := flag.Bool("profile", true, "capture CPU profiles of the leasecluster leader during the throughput workloads")
	keep := flag.Bool("keep", false, "keep the work directory (data dirs, node logs, profiles)")
	outDir := flag.String("out", "results", "directory for the JSON and Markdown results")
	phases := flag.String("phases", strings.Join(allPhases, ","), "comma-separated phases to run (scale and restart also run memory, which fills the lease table; restart alone fills only the largest); a partial run does not replace latest.md")
	replayEntries := flag.Int("replay-entries", 0, "log entries the replay phase's follower replays (default 20000; -quick 5000)")
	sizes := flag.String("table-sizes", "", "comma-separated lease counts the memory and scale phases run at, in turn on one growing table (default 100000,1000000; -quick 100000); restart uses the largest")
	systems := flag.String("systems", strings.Join(allSystems, ","), "comma-separated systems to run")
	scaleKills := flag.Int("scale-kills", 1, "leader kills in the scale phase, each on the same large table (the killed node is restarted between them); targets must hold in every one")
	fill := flag.Int("fill-clients", 512, "concurrent grants that fill the memory phase's table")
	lcLog := flag.String("lc-log-level", "warn", "log level of the leasecluster nodes (their logs stay in the work directory with -keep)")
	useTLS := flag.Bool("tls", false, "both systems with mutual TLS on client and peer connections (certificates made for the run); results in *-tls.json and latest-tls.md")
	flag.Parse()
	ph, err := parseNames(*phases, allPhases)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: -phases:", err)
		os.Exit(2)
	}
	sy, err := parseNames(*systems, allSystems)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: -systems:", err)
		os.Exit(2)
	}
	set := settings{Quick: *quick, Warm: time.Second, Dur: 5 * time.Second,
		ExpiryLeases: 100_000, TableSizes: []int{100_000, 1_000_000}, ReplayEntries: 20_000, ReplaySnapshot: 10_000_000, FailoverLeases: 1000, FailoverTTL: 3 * time.Second,
		IdleTTL: 60 * time.Second, IdleFor: 35 * time.Second, KAStreams: kaStreams, Clients: clientsPerSystem, Profile: *profile, FillClients: max(*fill, 1), Passes: 2,
		Phases: ph, Systems: sy, ScaleKills: max(*scaleKills, 1), LCLogLevel: *lcLog, TLS: *useTLS}
	if *quick {
		set.Warm, set.Dur, set.Passes = 500*time.Millisecond, 2*time.Second, 1
		// etcd revokes about 1,000 expired leases per second, and the
		// expiry phase waits for them: 10,000 took 30-45 s of the three
		// minutes.
		set.ExpiryLeases, set.TableSizes, set.ReplayEntries = 5_000, []int{100_000}, 5_000
		set.IdleTTL, set.IdleFor = 20*time.Second, 12*time.Second
	}
	if *sizes != "" {
		if set.TableSizes, err = parseSizes(*sizes); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -table-sizes:", err)
			os.Exit(2)
		}
	}
	set.ScaleLeases = set.TableSizes[len(set.TableSizes)-1]
	if *replayEntries > 0 {
		set.ReplayEntries = *replayEntries
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, set, *keep, *outDir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// clusters holds both clusters under test.
type clusters struct {
	lcNodes, etcdNodes []*node
	lc                 *lcSystem
	etcd               *etcdSystem
}

func (c *clusters) stopAll() {
	if c.lc != nil {
		c.lc.close()
	}
	if c.etcd != nil {
		c.etcd.close()
	}
	for _, n := range append(append([]*node(nil), c.lcNodes...), c.etcdNodes...) {
		n.stop()
	}
}

func run(ctx context.Context, set settings, keep bool, outDir string) error {
	began := time.Now()
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.Contains(string(b), "module github.com/leasecluster/leasecluster\n") {
		return fmt.Errorf("run from the bench directory of the leasecluster repository (cd bench && go run .)")
	}
	work, err := os.MkdirTemp("", "leasebench-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	profDir := filepath.Join(work, "profiles")
	os.MkdirAll(profDir, 0o755)

	// Build the server with the main module's own dependency versions.
	bin := filepath.Join(work, "leasecluster-bin")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/leasecluster")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	fmt.Fprintln(os.Stderr, "building leasecluster and etcdnode ...")
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/leasecluster: %w", err)
	}
	etcdBin := filepath.Join(work, "etcdnode-bin")
	build = exec.CommandContext(ctx, "go", "build", "-o", etcdBin, "./etcdnode")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./etcdnode: %w", err)
	}
	help, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	pprof := set.Profile && strings.Contains(string(help), "--pprof")

	res := &Results{Settings: set, Machine: machineInfo(), Commit: gitCommit(root), Started: began.UTC().Format(time.RFC3339)}
	res.Notes = notes(set, pprof)
	cl := &clusters{}
	defer cl.stopAll()
	var tlsSet *benchTLS
	if set.TLS {
		if tlsSet, err = newBenchTLS(filepath.Join(work, "tls"), []string{"lc1", "lc2", "lc3", "e1", "e2", "e3"}); err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
	}
	// The hops phase runs first, on its own cluster, with nothing else
	// running on the machine.
	if set.Phases.has(phaseHops) && set.Systems.has(sysLC) {
		h := runHops(ctx, set, bin, work, tlsSet)
		res.Hops = &h
	}
	if err := startClusters(ctx, cl, bin, etcdBin, work, pprof, set.Systems, set.LCLogLevel, tlsSet); err != nil {
		return err
	}
	// Each system is run only if selected; an unselected one's figures stay
	// zero, and the targets that need it read "not run".
	each := func(f func(s system, lc bool)) {
		if cl.lc != nil {
			f(cl.lc, true)
		}
		if cl.etcd != nil {
			f(cl.etcd, false)
		}
	}

	lcT, etT := map[string]LoadResult{}, map[string]LoadResult{}
	if set.Phases.has(phaseThroughput) {
		fmt.Fprintln(os.Stderr, "throughput workloads (the systems take turns, a workload each) ...")
		var alt *alternator
		if cl.lc != nil && cl.etcd != nil {
			alt = newAlternator()
		}
		var lcErr, etErr error
		var wg sync.WaitGroup
		if cl.lc != nil {
			var prof profiler
			if pprof {
				prof = lcProfiler(ctx, cl.lc, profDir)
			}
			wg.Go(func() { lcT, lcErr = runSuite(ctx, cl.lc, set, prof, alt, 0) })
		}
		if cl.etcd != nil {
			wg.Go(func() { etT, etErr = runSuite(ctx, cl.etcd, set, nil, alt, 1) })
		}
		wg.Wait()
		if err := errors.Join(lcErr, etErr); err != nil {
			return err
		}
		for _, w := range workloadOrder {
			res.Throughput = append(res.Throughput, pairOf(w, lcT[w], etT[w]))
		}
	}

	// The failover runs before the expiry storm: etcd may still be revoking
	// that storm's leases minutes later, and a failover measured on a busy
	// cluster measures the backlog.
	if set.Phases.has(phaseFailover) {
		// Both failovers run at once: they are paced by timers (renewals every
		// TTL/3, the idle lease's age), not by CPU, and this halves the wait.
		fmt.Fprintf(os.Stderr, "failover (%d kept-alive leases, idle lease %v for %v; both systems at once) ...\n",
			set.FailoverLeases, set.IdleTTL, set.IdleFor)
		fp := failoverParams{keptAlive: set.FailoverLeases, ttl: set.FailoverTTL, idleTTL: set.IdleTTL, idleFor: set.IdleFor, observe: set.FailoverTTL + time.Second}
		var wg sync.WaitGroup
		killed := map[system]int{}
		var mu sync.Mutex
		each(func(s system, lc bool) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, k := failover(ctx, s, fp, false)
				mu.Lock()
				defer mu.Unlock()
				killed[s] = k
				if lc {
					res.Failover.LC = r
				} else {
					res.Failover.Etcd = r
				}
			}()
		})
		wg.Wait()
		for s, k := range killed {
			if err := restart(ctx, s, k); err != nil {
				return err
			}
		}
	}

	if set.Phases.has(phaseExpiry) {
		fmt.Fprintf(os.Stderr, "expiry of %d leases ...\n", set.ExpiryLeases)
		each(func(s system, lc bool) {
			before, _ := s.count(ctx)
			if lc {
				res.Expiry.LC = expiry(ctx, s, set.ExpiryLeases, lcT[wGrant64].Throughput)
			} else {
				res.Expiry.Etcd = expiry(ctx, s, set.ExpiryLeases, etT[wGrant64].Throughput)
			}
			if err := settleExpiry(ctx, s, before); err != nil {
				// A revoke backlog would run beside (and distort) the
				// memory phase: start that system over, empty.
				fmt.Fprintf(os.Stderr, "  %-13s %v: starting it over with empty data dirs\n", s.name(), err)
				if err := wipe(ctx, s); err != nil {
					fmt.Fprintf(os.Stderr, "  %-13s %v\n", s.name(), err)
				}
			}
		})
	}

	// The table phases (memory, scale, restart) run on one system at a time,
	// which is stopped when done: a million idle leases (or a revoke backlog)
	// in the other system's processes would compete for the same two cores.
	if set.Phases.has(phaseMemory) || set.Phases.has(phaseScale) || set.Phases.has(phaseRestart) {
		each(func(s system, lc bool) {
			res.addTableRun(lc, tablePhases(ctx, s, set, pprof, profDir))
		})
	}
	cl.stopAll()

	// The replay phase starts clusters of its own (a snapshot threshold above
	// its grants), one system at a time, after the others are stopped.
	if set.Phases.has(phaseReplay) {
		env := replayEnv{lcBin: bin, etcdBin: etcdBin, work: work, logLevel: set.LCLogLevel, tls: tlsSet}
		for _, sy := range set.Systems {
			fmt.Fprintf(os.Stderr, "%s: replay of a %d-entry log ...\n", sy, set.ReplayEntries)
			r := replay(ctx, sy == sysLC, env, set.ReplayEntries, set.ReplaySnapshot)
			if sy == sysLC {
				res.Replay.LC = r
			} else {
				res.Replay.Etcd = r
			}
		}
	}

	res.Seconds = round1(time.Since(began).Seconds())
	res.evaluate()
	if pprof {
		res.attachProfiles(profDir)
	}
	return res.write(os.Stdout, outDir)
}

func startClusters(ctx context.Context, cl *clusters, bin, etcdBin, work string, pprof bool, systems nameSet, logLevel string, t *benchTLS) error {
	lcDir, etcdDir := filepath.Join(work, "leasecluster"), filepath.Join(work, "etcd")
	os.MkdirAll(lcDir, 0o755)
	os.MkdirAll(etcdDir, 0o755)
	var err error
	if systems.has(sysLC) {
		if cl.lcNodes, err = startLC(ctx, bin, lcDir, pprof, logLevel, t); err != nil {
			return err
		}
		if cl.lc, err = newLCSystem(ctx, cl.lcNodes, t); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := waitReady(wctx, cl.lc); err != nil {
			return err
		}
	}
	if systems.has(sysEtcd) {
		if cl.etcdNodes, cl.etcd, err = startEtcd(ctx, etcdBin, etcdDir, t); err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits for a leader and for a linearizable lease read to
// succeed. The read is of one lease that does not exist: listing every lease
// would cost the leader a pass over a table that may hold a million.
func waitReady(ctx context.Context, s system) error {
	return waitFor(ctx, s.name()+" ready", func(ctx context.Context) error {
		if _, err := s.leader(ctx); err != nil {
			return err
		}
		_, err := s.timeToLive(ctx, 0, readyProbeID)
		if errors.Is(err, errNotFound) {
			return nil
		}
		return err
	})
}

// readyProbeID is a lease ID that neither system hands out in this run
// (both draw random 63-bit IDs).
const readyProbeID = 0x5eed_1ea5e_0001

// restart brings a killed node back on its data dir and waits until the
// cluster has a leader and the node answers.
func restart(ctx context.Context, s system, i int) error {
	if i < 0 {
		return nil
	}
	n := s.nodes()[i]
	if err := n.start(); err != nil {
		return fmt.Errorf("restart %s: %w", n.name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitReady(wctx, s); err != nil {
		return err
	}
	// The next phase starts on a healthy cluster: one whose restarted node
	// is still applying a large backlog would make the next failover wait
	// on that node (a follower's raft loop blocks while its FSM catches up).
	return waitFor(wctx, s.name()+" caught up", s.caughtUp)
}

// settleExpiry waits (at most 30 s) until the expiry phase's leases are gone,
// so that the next phase does not run beside a revoke backlog. A system that
// missed the expiry target may go on revoking for minutes; the error says so.
func settleExpiry(ctx context.Context, s system, before int) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := waitFor(wctx, s.name()+" expired leases gone", func(ctx context.Context) error {
		n, err := s.count(ctx)
		if err == nil && n > before {
			err = fmt.Errorf("%d expired leases left", n-before)
		}
		return err
	})
	if d := time.Since(start); err == nil && d > time.Second {
		fmt.Fprintf(os.Stderr, "  %-13s expired leases gone after %.0f s more\n", s.name(), d.Seconds())
	}
	return err
}

// wipe replaces a system's cluster with an empty one on the same addresses
// and data directories: every node is killed, its data deleted, and the
// cluster bootstrapped again. Clients reconnect on their own.
func wipe(ctx context.Context, s system) error {
	for _, n := range s.nodes() {
		n.kill()
	}
	for _, n := range s.nodes() {
		if err := os.RemoveAll(n.dataDir); err != nil {
			return err
		}
	}
	for _, n := range s.nodes() {
		if err := n.start(); err != nil {
			return fmt.Errorf("start %s: %w", n.name, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return waitReady(wctx, s)
}

// notes documents how the two systems are made comparable.
func notes(set settings, pprof bool) []string {
	n := []string{
		"Each node is its own OS process on 127.0.0.1 with fsync on and default settings (log level warn on both). leasecluster: `leasecluster serve` built from this commit; etcd v3.6.14 via embed (bench/etcdnode), in child processes of the bench binary.",
		"Unary calls go through each system's Go client (leasecluster client.Client, etcd clientv3), 4 client objects per system shared round robin by the workers; a closed loop of N workers = N concurrent clients.",
		"Grant TTLs: leasecluster takes milliseconds; etcd whole seconds (rounded up; etcd's minimum TTL with default timing is ceil(1.5 x 1 s election) = 2 s, leasecluster's 1.5 s).",
		"KeepAlive throughput: each lease renewed closed loop (send, wait for its acknowledgement, repeat) over 4 raw bidirectional streams per workload, one goroutine per stream receiving each acknowledgement and sending that lease's next renewal at once (no hand-off or timer per renewal in the load generator): leasecluster Leases.KeepAlive, etcd Lease.LeaseKeepAlive, the closest equivalents (etcd's clientv3 KeepAlive and leasecluster's client.KeepAlive both multiplex leases on one such stream but renew only every TTL/3). Failover uses the client libraries' own KeepAlive (every TTL/3 on both).",
		"TimeToLive: leasecluster's default linearizable read (leadership confirmed by a quorum, applied index caught up). etcd has no linearizable mode for LeaseTimeToLive: the leader answers after waiting for its applied index, without a ReadIndex round, so etcd does less work per read.",
		"Through a follower: etcd forwards a follower's keepalives to the leader; leasecluster's gRPC KeepAlive is refused on a follower (UNAVAILABLE + leader hint), so its follower path is the HTTP/JSON API, which forwards each renewal (POST /v1/leases/{id}/keepalive) — unless a probe renewal over the follower's gRPC stream succeeds, in which case the stream is used.",
		fmt.Sprintf("The throughput workloads take turns, one workload at a time, and each runs %d time(s) per system: with two, in the order leasecluster, etcd, etcd, leasecluster, so that the shared machine's drifting speed falls on both systems alike; a figure is over both passes (throughput: all operations over all the time; p50 and p99: the mean of the passes'). The two failovers of the small-table phase run concurrently (timer-paced); everything else runs one system at a time. The machine has 2 cores shared with other work: figures are from one run and noisy.", set.Passes),
		"CPU per operation: the user and system CPU time of all of a system's node processes, and of the bench process (the load generator), from the start to the end of each workload's measured interval, divided by its operations (all passes).",
		fmt.Sprintf("Table phases, one system at a time: the table grows to each of %v leases in turn (long TTLs); at each size the leader's VmRSS growth from its own VmRSS with the empty table, then a leader kill on that table (scale; the killed node is restarted and caught up before the table grows). On the largest table a follower is SIGKILLed and started again on its data dir (restart).", set.TableSizes),
		fmt.Sprintf("Replay: a fresh cluster of each system that takes no snapshot before %d log entries (leasecluster --snapshot-threshold, etcd --snapshot-count), grants %d at a time until its log has grown by %d entries (one at a time, a grant is one entry on both; leasecluster puts concurrent grants in one), then a follower SIGKILLed and started again: leasecluster applies its whole log again, etcd reads its WAL (its backend already holds what was applied).", set.ReplaySnapshot, replayClients, set.ReplayEntries),
		"Restart times run from the process start until the node has applied the commit index the leader had at the kill and would serve a linearizable read itself (leasecluster: GET /readyz on it; etcd: a linearizable range read through it alone), polled every 10 ms; first answer: its first status reply.",
	}
	if set.TLS {
		n = append(n, tlsNote())
	}
	if set.Quick {
		n = append(n, fmt.Sprintf("QUICK MODE: %v per workload after %v warm-up; expiry of %d leases instead of 100,000; table phases at %v leases instead of 100,000 and 1,000,000; replay of %d log entries instead of 20,000; idle lease of %v left for %v instead of 60 s for 35 s.",
			set.Dur, set.Warm, set.ExpiryLeases, set.TableSizes, set.ReplayEntries, set.IdleTTL, set.IdleFor))
	}
	if pprof {
		n = append(n, "CPU profiles of the leasecluster leader are taken (via --pprof) during its throughput workloads; the top entries of those whose target was missed are listed below.")
	} else {
		n = append(n, "No CPU profiles: the leasecluster binary has no --pprof flag or -profile=false.")
	}
	return n
}
