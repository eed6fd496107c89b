package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The hops phase answers "where does one client's grant spend its time"
// (issue 22): a fresh leasecluster cluster, one client granting back to back,
// and then each node's /metrics, whose raft timings (hashicorp/raft's own,
// bridged from go-metrics as summaries since the node started) and gRPC
// handling histogram split the client's latency into its hops. A fresh
// cluster, because the summaries cover a node's whole life: after the
// throughput phase they would mix every workload.

// HopsResult is the hops phase's figures: p50s in milliseconds.
type HopsResult struct {
	Grants int     `json:"grants"`
	Client float64 `json:"client_p50_ms"` // the client's round trip
	// Handler is the leader's gRPC handling time of Grant (p50 interpolated
	// in the histogram's buckets, so coarse).
	Handler float64 `json:"leader_handler_p50_ms"`
	// The raft timings, each the p50 of hashicorp/raft's summary.
	LeaderStore    float64 `json:"leader_store_logs_p50_ms"`       // raft.leader.dispatchLog: the leader's log write
	Commit         float64 `json:"commit_p50_ms"`                  // raft.commitTime: from before the leader's write to commit
	AppendRPC      float64 `json:"append_entries_rpc_p50_ms"`      // raft.replication.appendEntries.rpc: the leader's round trip to a follower (mean of the followers' p50)
	FollowerStore  float64 `json:"follower_store_logs_p50_ms"`     // raft.rpc.appendEntries.storeLogs on the followers
	FollowerHandle float64 `json:"follower_append_entries_p50_ms"` // raft.rpc.appendEntries: a follower's whole handling
	FSMEnqueue     float64 `json:"fsm_enqueue_p50_ms"`             // raft.fsm.enqueue: commit to the FSM goroutine
	FSMApply       float64 `json:"fsm_apply_p50_ms"`               // raft.fsm.applyBatch: the FSM's apply of a batch
	Error          string  `json:"error,omitempty"`
}

// hops runs the phase: its own three nodes in dir, stopped at the end.
func hops(ctx context.Context, bin, dir, logLevel string, t *benchTLS, warm, dur time.Duration) (res HopsResult) {
	ns, err := startLC(ctx, bin, dir, false, logLevel, t)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer stopNodes(ns)
	sys, err := newLCSystem(ctx, ns, t)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer sys.close()
	if err := waitReady(ctx, sys); err != nil {
		res.Error = err.Error()
		return res
	}
	lr := closedLoop(ctx, 1, warm, dur, func(ctx context.Context, w int) error {
		_, err := sys.grant(ctx, w, longTTL)
		return err
	})
	res.Grants, res.Client = lr.Ops, lr.P50Ms
	li, err := sys.leader(ctx)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var followerStore, followerHandle []float64
	for i, n := range ns {
		m, err := scrape(ctx, sys.http, sys.scheme+"://"+n.httpEP+"/metrics")
		if err != nil {
			res.Error = err.Error()
			return res
		}
		if i != li {
			followerStore = append(followerStore, m.quantile("leasecluster_raft_rpc_appendEntries_storeLogs", "0.5"))
			followerHandle = append(followerHandle, m.quantile("leasecluster_raft_rpc_appendEntries", "0.5"))
			continue
		}
		res.Handler = round3(1000 * m.histogramQuantile("grpc_server_handling_seconds", `grpc_method="Grant"`, 0.5))
		res.LeaderStore = m.quantile("leasecluster_raft_leader_dispatchLog", "0.5")
		res.Commit = m.quantile("leasecluster_raft_commitTime", "0.5")
		res.AppendRPC = m.quantile("leasecluster_raft_replication_appendEntries_rpc", "0.5")
		res.FSMEnqueue = m.quantile("leasecluster_raft_fsm_enqueue", "0.5")
		res.FSMApply = m.quantile("leasecluster_raft_fsm_applyBatch", "0.5")
	}
	res.FollowerStore, res.FollowerHandle = mean(followerStore), mean(followerHandle)
	return res
}

// mean is the mean of xs, rounded; -1 if there are none (JSON has no NaN).
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return round3(s / float64(len(xs)))
}

// metricLines are the samples of one Prometheus text exposition: the series
// (name and labels as written) and its value.
type metricLines []struct {
	series string
	value  float64
}

func scrape(ctx context.Context, hc *http.Client, url string) (metricLines, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metricLines, error) {
	var out metricLines
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out = append(out, struct {
			series string
			value  float64
		}{line[:i], v})
	}
	return out, sc.Err()
}

// quantile is the mean over the series of summary name (one per peer, for
// the per-follower timings) at quantile q, rounded; -1 if none.
func (m metricLines) quantile(name, q string) float64 {
	var vs []float64
	for _, s := range m {
		if strings.HasPrefix(s.series, name+"{") && strings.Contains(s.series, `quantile="`+q+`"`) && !math.IsNaN(s.value) {
			vs = append(vs, s.value)
		}
	}
	return mean(vs)
}

// histogramQuantile estimates quantile q of the histogram name's series
// matching label, interpolating linearly inside the bucket as Prometheus'
// histogram_quantile does; -1 without observations.
func (m metricLines) histogramQuantile(name, label string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for _, s := range m {
		if !strings.HasPrefix(s.series, name+"_bucket{") || !strings.Contains(s.series, label) {
			continue
		}
		i := strings.Index(s.series, `le="`)
		if i < 0 {
			continue
		}
		le, err := strconv.ParseFloat(strings.SplitN(s.series[i+4:], `"`, 2)[0], 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, s.value})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return -1
	}
	rank := q * bs[len(bs)-1].n
	lo, below := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return lo
			}
			return lo + (b.le-lo)*(rank-below)/(b.n-below)
		}
		lo, below = b.le, b.n
	}
	return lo
}

// runHops runs the phase in a directory of its own under work.
func runHops(ctx context.Context, set settings, bin, work string, t *benchTLS) HopsResult {
	fmt.Fprintln(os.Stderr, "hops: one client's grants on a fresh leasecluster cluster ...")
	return hops(ctx, bin, filepath.Join(work, "hops"), set.LCLogLevel, t, set.Warm, set.Dur)
}

// hopsTable reports the phase: the client's p50 and what it is made of.
func hopsTable(w io.Writer, h HopsResult) {
	fmt.Fprintf(w, "\n## Where one client's grant goes (hops, p50 ms, fresh cluster, %d grants)\n\n", h.Grants)
	if h.Error != "" {
		fmt.Fprintf(w, "- error: %s\n", h.Error)
		return
	}
	fmt.Fprintln(w, "| hop | p50 ms |\n|---|---:|")
	row := func(name string, v float64) { fmt.Fprintf(w, "| %s | %.3f |\n", name, v) }
	row("client round trip", h.Client)
	row("leader gRPC handler (Grant; bucket-interpolated)", h.Handler)
	row("raft commit (leader write + replication + quorum)", h.Commit)
	row("  leader log write (dispatchLog)", h.LeaderStore)
	row("  leader -> follower AppendEntries round trip", h.AppendRPC)
	row("    follower handling (appendEntries)", h.FollowerHandle)
	row("      follower log write (storeLogs)", h.FollowerStore)
	row("commit -> FSM goroutine (fsm.enqueue)", h.FSMEnqueue)
	row("FSM apply of a batch (fsm.applyBatch)", h.FSMApply)
	fmt.Fprintf(w, "\nThe handler less commit and apply is the proposer's and group commit's hand-offs and raft's apply queue; "+
		"the client less the handler is gRPC and the client library both ways.\n")
}
