package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// longTTL is the TTL of leases that must outlive the whole run (throughput
// pools, background leases for the memory and scale phases).
const longTTL = time.Hour

// Workload names, in the order they run; they key the results.
const (
	wGrant1     = "grant c=1"
	wGrant16    = "grant c=16"
	wGrant64    = "grant c=64"
	wRevoke64   = "revoke c=64"
	wTTL64      = "timetolive c=64"
	wKA64       = "keepalive 64 leases (leader)"
	wKA256      = "keepalive 256 leases (leader)"
	wKAFollower = "keepalive 64 leases (via follower)"
)

var workloadOrder = []string{wGrant1, wGrant16, wGrant64, wRevoke64, wTTL64, wKA64, wKA256, wKAFollower}

// kaStreams is how many renewal streams a keepalive workload spreads its
// leases over, for both systems.
const kaStreams = 4

// profiler captures a CPU profile of a node while a workload runs; nil when
// profiling is off or unavailable.
type profiler func(workload string, secs int) (stop func())

// alternator makes two suites take turns, one workload each: the one whose
// turn it is runs alone (its preparation too), then hands over. The shared
// machine's speed drifts by tens of percent over minutes; measured turn
// about, each workload's pair is minutes closer in time than suite after
// suite. A nil alternator lets a lone suite run straight through.
type alternator struct {
	mu   sync.Mutex
	cond *sync.Cond
	turn int
	done [2]bool
}

func newAlternator() *alternator {
	a := &alternator{}
	a.cond = sync.NewCond(&a.mu)
	return a
}

// wait blocks until it is suite me's turn.
func (a *alternator) wait(me int) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.turn != me {
		a.cond.Wait()
	}
}

// yield hands the turn to the other suite, unless it has finished, and waits
// for it to come back.
func (a *alternator) yield(me int) {
	if a == nil {
		return
	}
	a.mu.Lock()
	if !a.done[1-me] {
		a.turn = 1 - me
		a.cond.Broadcast()
	}
	a.mu.Unlock()
	a.wait(me)
}

// finish gives the other suite every remaining turn.
func (a *alternator) finish(me int) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done[me] = true
	a.turn = 1 - me
	a.cond.Broadcast()
}

// combinePasses joins the passes of one workload: operations, errors and
// time add up, and the percentiles are the mean of the passes' (each pass
// has thousands of samples or more, so the mean is close to the pooled one).
func combinePasses(ps []LoadResult) LoadResult {
	c := ps[0]
	if len(ps) == 1 {
		return c
	}
	c.Ops, c.Errors, c.Seconds, c.P50Ms, c.P99Ms = 0, 0, 0, 0, 0
	c.ServerCPUSeconds, c.LoadCPUSeconds = 0, 0
	cpuMeasured := true
	for _, p := range ps {
		c.Ops += p.Ops
		c.Errors += p.Errors
		c.Seconds += p.Seconds
		c.ServerCPUSeconds += p.ServerCPUSeconds
		c.LoadCPUSeconds += p.LoadCPUSeconds
		cpuMeasured = cpuMeasured && p.ServerCPUSeconds > 0
		c.P50Ms += p.P50Ms / float64(len(ps))
		c.P99Ms += p.P99Ms / float64(len(ps))
		if c.FirstError == "" {
			c.FirstError = p.FirstError
		}
	}
	if c.Seconds > 0 {
		c.Throughput = float64(c.Ops) / c.Seconds
	}
	c.ServerCPUSeconds, c.LoadCPUSeconds = round3(c.ServerCPUSeconds), round3(c.LoadCPUSeconds)
	if !cpuMeasured {
		c.ServerCPUSeconds, c.LoadCPUSeconds = 0, 0
	}
	c.Note = strings.TrimSpace(fmt.Sprintf("%d passes: %s ops/s %s", len(ps), passRates(ps), c.Note))
	return c
}

func passRates(ps []LoadResult) string {
	var rs []string
	for _, p := range ps {
		rs = append(rs, fmt.Sprintf("%.0f", p.Throughput))
	}
	return strings.Join(rs, " / ")
}

// runSuite runs the throughput workloads against one system, taking turns
// (alt, as suite me) with the other system's suite.
func runSuite(ctx context.Context, sys system, set settings, prof profiler, alt *alternator, me int) (map[string]LoadResult, error) {
	alt.wait(me)
	defer alt.finish(me)
	out := map[string]LoadResult{}
	var (
		mu      sync.Mutex
		granted []int64
	)
	// Each workload runs set.Passes times. With two, the turns make the order
	// of every workload A B B A (suite 0 yields between its passes, suite 1
	// after both), which cancels a steady drift of the machine's speed.
	run := func(name string, f func() LoadResult) {
		var passes []LoadResult
		for pass := range set.Passes {
			var stop func()
			if prof != nil && pass == 0 {
				stop = prof(name, int((set.Warm + set.Dur).Seconds()))
			}
			cpu := startCPUWindow(sys.nodes(), set.Warm, set.Dur)
			r := f()
			cpu.record(&r)
			if stop != nil {
				stop()
			}
			passes = append(passes, r)
			fmt.Fprintf(os.Stderr, "  %-13s %-36s %9.1f ops/s  p50 %7.2f ms  p99 %7.2f ms  errors %d %s\n",
				sys.name(), name, r.Throughput, r.P50Ms, r.P99Ms, r.Errors, r.Note)
			if me == 0 && pass+1 < set.Passes {
				alt.yield(me)
			}
		}
		out[name] = combinePasses(passes)
		if me == 1 || set.Passes == 1 {
			alt.yield(me)
		}
	}
	grant := func(ctx context.Context, w int) error {
		id, err := sys.grant(ctx, w, longTTL)
		if err == nil {
			mu.Lock()
			granted = append(granted, id)
			mu.Unlock()
		}
		return err
	}
	for _, c := range []struct {
		name string
		n    int
	}{{wGrant1, 1}, {wGrant16, 16}, {wGrant64, 64}} {
		run(c.name, func() LoadResult { return closedLoop(ctx, c.n, set.Warm, set.Dur, grant) })
	}
	// The first 1,000 granted leases serve TimeToLive and KeepAlive; the
	// rest are the revoke pool.
	const keep = 1000
	if len(granted) < keep+1000 {
		if err := parallel(ctx, keep+1000-len(granted), 64, func(ctx context.Context, w, _ int) error { return grant(ctx, w) }); err != nil {
			return nil, fmt.Errorf("%s: granting pool: %w", sys.name(), err)
		}
	}
	kept, pool := granted[:keep], granted[keep:]
	var next atomic.Int64
	run(wRevoke64, func() LoadResult {
		r := closedLoop(ctx, 64, set.Warm, set.Dur, func(ctx context.Context, w int) error {
			i := next.Add(1) - 1
			if i >= int64(len(pool)) {
				return errStop
			}
			return sys.revoke(ctx, w, pool[i])
		})
		r.Note = fmt.Sprintf("pool %d leases", len(pool))
		return r
	})
	var ttlN atomic.Int64
	run(wTTL64, func() LoadResult {
		return closedLoop(ctx, 64, set.Warm, set.Dur, func(ctx context.Context, w int) error {
			_, err := sys.timeToLive(ctx, w, kept[ttlN.Add(1)%keep])
			return err
		})
	})
	li, err := sys.leader(ctx)
	if err != nil {
		return nil, err
	}
	run(wKA64, func() LoadResult { return streamLoad(ctx, sys, li, kept[:64], kaStreams, set.Warm, set.Dur) })
	run(wKA256, func() LoadResult { return streamLoad(ctx, sys, li, kept[:256], kaStreams, set.Warm, set.Dur) })
	fi := (li + 1) % len(sys.nodes())
	run(wKAFollower, func() LoadResult { return followerLoad(ctx, sys, fi, kept[:64], set) })
	return out, nil
}

// followerLoad renews through follower fi. etcd forwards a follower's
// LeaseKeepAlive stream to the leader; leasecluster's gRPC KeepAlive answers
// UNAVAILABLE + LeaderHint on a follower, so unless a probe renewal over the
// follower's stream succeeds, its renewals go through the follower's HTTP API
// (POST /v1/leases/{id}/keepalive), which forwards them to the leader.
func followerLoad(ctx context.Context, sys system, fi int, ids []int64, set settings) LoadResult {
	lc, ok := sys.(*lcSystem)
	if !ok || streamWorks(ctx, sys, fi, ids[0]) {
		r := streamLoad(ctx, sys, fi, ids, kaStreams, set.Warm, set.Dur)
		r.Note = "gRPC stream to follower"
		return r
	}
	r := closedLoop(ctx, len(ids), set.Warm, set.Dur, func(ctx context.Context, w int) error {
		return lc.httpRenew(ctx, fi, ids[w])
	})
	r.Note = "HTTP POST keepalive to follower (gRPC stream refused on follower)"
	return r
}

// streamWorks reports whether one renewal of id over a stream to node i is
// acknowledged.
func streamWorks(ctx context.Context, sys system, i int, id int64) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := sys.openStream(ctx, i)
	if err != nil {
		return false
	}
	if st.send(id) != nil {
		return false
	}
	_, err = st.recv()
	return err == nil
}

// lcProfiler returns a profiler that fetches a CPU profile from the current
// leasecluster leader's /debug/pprof (served with --pprof on its plain-HTTP
// --debug-addr) into dir.
// survivorProfiler returns a failover hook that takes a 6 s CPU profile of
// every node but the killed one, from the kill on: where a slow failover
// spends its time (profiles/<tag>-<node>.pprof in the work directory).
func survivorProfiler(sys *lcSystem, dir, tag string) func(killed int) {
	return func(killed int) {
		for i, n := range sys.ns {
			if i == killed {
				continue
			}
			go fetchProfile(sys.prof, "http://"+n.debugEP+"/debug/pprof/profile?seconds=6", filepath.Join(dir, tag+"-"+n.name+".pprof"))
		}
	}
}

// fetchProfile saves what url answers to path; a failure leaves no file.
func fetchProfile(c *http.Client, url, path string) {
	resp, err := c.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	io.Copy(f, resp.Body)
	f.Close()
}

func lcProfiler(ctx context.Context, sys *lcSystem, dir string) profiler {
	return func(workload string, secs int) func() {
		li, err := sys.leader(ctx)
		if err != nil {
			return nil
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			fetchProfile(sys.prof, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", sys.ns[li].debugEP, max(secs, 1)), profilePath(dir, workload))
		}()
		return func() { <-done }
	}
}
