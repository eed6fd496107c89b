package server

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkMemberJoin measures how long a node started with --join on an
// empty data dir takes to become a voter in a three-node cluster holding
// LEASECLUSTER_BENCH_JOIN_LEASES leases (default 100,000): the snapshot's
// transfer and install, then the promotion. The leader's log is compacted
// to a snapshot first, so the new node installs it. Run it once: go test -run '^$' -bench MemberJoin -benchtime 1x ./server/
func BenchmarkMemberJoin(b *testing.B) {
	leases := 100_000
	if v, err := strconv.Atoi(os.Getenv("LEASECLUSTER_BENCH_JOIN_LEASES")); err == nil && v > 0 {
		leases = v
	}
	c := newTestCluster(b, 3, func(cfg *Config) {
		cfg.TrailingLogs = 16
		cfg.ApplyTimeout = time.Minute
		// Production timings: three loaded nodes share this process's CPUs,
		// and the test clusters' 400 ms elections fire under that load.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.Extend = 500*time.Millisecond, time.Second, time.Second
	})
	_, ld := c.leader()
	loaded := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range leases {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for {
				_, ld := c.leader() // a leader change under load: grant on the new one
				_, _, err := ld.ops.grant(context.Background(), 0, time.Hour.Milliseconds(), 0)
				if err == nil {
					return
				}
				if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrOutcomeUnknown) {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	_, ld = c.leader()
	load := time.Since(loaded)
	snapStart := time.Now()
	if err := ld.rs.raft.Snapshot().Error(); err != nil {
		b.Fatal(err)
	}
	snapTook := time.Since(snapStart)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		i := c.addNode("n4", "", []string{ld.Addr()})
		c.awaitSuffrage("n4", "voter", 10*time.Minute)
		joined := time.Since(start)
		b.ReportMetric(joined.Seconds(), "join-s")
		snap, _ := strconv.ParseFloat(c.node(i).rs.raft.Stats()["last_snapshot_index"], 64)
		b.ReportMetric(snap, "installed-snapshot-index") // 0: caught up without a snapshot
		b.ReportMetric(load.Seconds(), "load-s")         // granting the leases (not timed)
		b.ReportMetric(snapTook.Seconds(), "snapshot-s") // the leader's snapshot before the join (not timed)
		b.StopTimer()
		c.kill(i)
		_, ld = c.leader()
		if err := ld.members.remove("n4", false); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
