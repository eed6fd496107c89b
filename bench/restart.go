package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/leasecluster/leasecluster/internal/proctest"
)

// RestartResult is one follower's restart: SIGKILL, start again on its data
// dir, and the time until it is ready.
type RestartResult struct {
	Leases   int     `json:"leases"`    // in the table when the follower was killed
	LogIndex uint64  `json:"log_index"` // the leader's commit index then: the follower is ready once it has applied it
	Node     string  `json:"node"`
	AnswerMs float64 `json:"first_answer_ms"` // process start to the first status the node answered
	ReadyMs  float64 `json:"ready_ms"`        // process start until ready (see restartFollower)
	RSSMiB   float64 `json:"rss_mib"`         // the restarted node's VmRSS when ready
	Error    string  `json:"error,omitempty"`
}

// restartTimeout bounds the wait for a restarted follower.
const restartTimeout = 5 * time.Minute

// restartFollower SIGKILLs a follower of an idle, caught-up cluster, starts
// it again on its data dir and measures, from the process start, when it
// first answers a status read and when it is ready: it has applied the
// commit index the leader had at the kill, and it would serve a linearizable
// read itself (system.memberReady: leasecluster's /readyz, etcd's
// linearizable range read through that member). Both are polled every 10 ms
// over connections that reconnect every 10 ms.
func restartFollower(ctx context.Context, s system, leases int) (res RestartResult) {
	res.Leases = leases
	fail := func(err error) RestartResult {
		res.Error = err.Error()
		fmt.Fprintf(os.Stderr, "  %s restart: %v\n", s.name(), err)
		return res
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := waitFor(wctx, s.name()+" caught up", s.caughtUp)
	cancel()
	if err != nil {
		return fail(err)
	}
	li, err := s.leader(ctx)
	if err != nil {
		return fail(err)
	}
	fi := -1
	for i, n := range s.nodes() {
		if i != li && n.alive() {
			fi = i
			break
		}
	}
	if fi < 0 {
		return fail(errors.New("no live follower"))
	}
	_, commit, err := s.indexes(ctx, li)
	if err != nil {
		return fail(err)
	}
	n := s.nodes()[fi]
	res.LogIndex, res.Node = commit, n.name
	n.kill()
	start := time.Now()
	if err := n.start(); err != nil {
		return fail(fmt.Errorf("start %s: %w", n.name, err))
	}
	rctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	rctx, stop := proctest.ExitContext(rctx, n.d)
	defer stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, pcancel := context.WithTimeout(rctx, time.Second)
		applied, _, err := s.indexes(pctx, fi)
		if err == nil && res.AnswerMs == 0 {
			res.AnswerMs = ms(time.Since(start))
		}
		if err == nil && applied < commit {
			err = fmt.Errorf("applied %d of %d", applied, commit)
		}
		if err == nil {
			err = s.memberReady(pctx, fi)
		}
		pcancel()
		if err == nil {
			res.ReadyMs = ms(time.Since(start))
			break
		}
		select {
		case <-rctx.Done():
			return fail(fmt.Errorf("%s not ready %v after its start: %w (last: %v)", n.name, time.Since(start).Round(time.Second), context.Cause(rctx), err))
		case <-tick.C:
		}
	}
	if kib, err := rssKiB(n.pid()); err == nil {
		res.RSSMiB = round3(float64(kib) / 1024)
	}
	fmt.Fprintf(os.Stderr, "  %-13s restart of %s (%d leases, log index %d): first answer %.0f ms, ready %.0f ms, RSS %.0f MiB\n",
		s.name(), n.name, leases, commit, res.AnswerMs, res.ReadyMs, res.RSSMiB)
	return res
}

// replayEnv is what the replay phase needs to start clusters of its own.
type replayEnv struct {
	lcBin, etcdBin, work, logLevel string
	tls                            *benchTLS
}

// replay starts a fresh three-node cluster of one system whose nodes take
// no snapshot before threshold log entries, grants long-lived leases until
// its log has grown by entries (one grant at a time: leasecluster batches
// concurrent grants into one entry, etcd does not, and one at a time each
// grant is an entry on both, and quickest so on leasecluster), and restarts
// a follower:
// it replays that whole log (leasecluster applies it to its state again;
// etcd reads its WAL, its backend already holding what was applied). The
// cluster is stopped afterwards.
func replay(ctx context.Context, lc bool, env replayEnv, entries int, threshold uint64) (res RestartResult) {
	name := map[bool]string{true: sysLC, false: sysEtcd}[lc]
	fail := func(err error) RestartResult {
		res.Error = err.Error()
		fmt.Fprintf(os.Stderr, "  %s replay: %v\n", name, err)
		return res
	}
	dir := filepath.Join(env.work, "replay-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	var s system
	if lc {
		nodes, err := startLC(ctx, env.lcBin, dir, false, env.logLevel, env.tls, "--snapshot-threshold", fmt.Sprint(threshold))
		if err != nil {
			return fail(err)
		}
		defer stopNodes(nodes)
		sys, err := newLCSystem(ctx, nodes, env.tls)
		if err != nil {
			return fail(err)
		}
		defer sys.close()
		s = sys
	} else {
		nodes, sys, err := startEtcd(ctx, env.etcdBin, dir, env.tls, "-snapshot-count", fmt.Sprint(threshold))
		if err != nil {
			return fail(err)
		}
		defer stopNodes(nodes)
		defer sys.close()
		s = sys
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := waitReady(wctx, s)
	cancel()
	if err != nil {
		return fail(err)
	}
	li, err := s.leader(ctx)
	if err != nil {
		return fail(err)
	}
	_, c0, err := s.indexes(ctx, li)
	if err != nil {
		return fail(err)
	}
	start, grants := time.Now(), 0
	for {
		if err := parallel(ctx, replayChunk, replayClients, func(ctx context.Context, w, _ int) error {
			_, err := s.grant(ctx, w, longTTL)
			return err
		}); err != nil {
			res.Leases = grants
			return fail(fmt.Errorf("granting: %w", err))
		}
		grants += replayChunk
		_, c, err := s.indexes(ctx, li)
		if err != nil {
			return fail(err)
		}
		if c >= c0+uint64(entries) {
			break
		}
		if time.Since(start) > replayGrantFor {
			fmt.Fprintf(os.Stderr, "  %-13s replay: the log grew by only %d entries in %v\n", name, c-c0, replayGrantFor)
			break
		}
	}
	fmt.Fprintf(os.Stderr, "  %-13s replay: %d grants in %.1f s\n", name, grants, time.Since(start).Seconds())
	return restartFollower(ctx, s, grants)
}

// The replay phase's grants: replayClients at a time, replayChunk between
// looks at the log's length, for at most replayGrantFor.
const (
	replayClients  = 1
	replayChunk    = 500
	replayGrantFor = 4 * time.Minute
)

func stopNodes(ns []*node) {
	for _, n := range ns {
		n.stop()
	}
}
