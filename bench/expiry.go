package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// ExpiryResult is one system's figures for a burst of simultaneous expiries.
type ExpiryResult struct {
	Leases          int     `json:"leases"`
	GrantSeconds    float64 `json:"grant_seconds"`
	DueSpreadMs     float64 `json:"due_spread_ms"`            // last due minus first due
	RevokedAfterMs  float64 `json:"all_revoked_after_due_ms"` // from the last lease's due time to none left
	PollResolutionM float64 `json:"poll_resolution_ms"`       // the finish is known to this: from the start of the last count that saw leases to the end of the one that saw none
	RenewP50Ms      float64 `json:"renew_p50_ms"`
	RenewP99Ms      float64 `json:"renew_p99_ms"`
	RenewErrors     int     `json:"renew_errors"`
	Error           string  `json:"error,omitempty"`
}

// expiry grants n leases whose expiries fall within one second (leasecluster:
// millisecond TTLs aimed at one instant; etcd: whole-second TTLs, so due
// times spread over up to a second) and measures how long after the last one
// is due every one of them is gone. 64 other leases are renewed every 100 ms
// over streams to the leader meanwhile; their latency is the renewal cost of
// the storm.
func expiry(ctx context.Context, sys system, n int, grantRate float64) (res ExpiryResult) {
	res.Leases = n
	fail := func(err error) ExpiryResult {
		res.Error = err.Error()
		fmt.Fprintf(os.Stderr, "  %s expiry: %v\n", sys.name(), err)
		return res
	}
	probes := make([]int64, 64)
	if err := parallel(ctx, len(probes), 16, func(ctx context.Context, w, i int) (err error) {
		probes[i], err = sys.grant(ctx, w, longTTL)
		return err
	}); err != nil {
		return fail(err)
	}
	// The probes live long; revoke them whatever happens, so that the phase
	// leaves the table as it found it (settleExpiry relies on that).
	defer parallel(context.WithoutCancel(ctx), len(probes), 16, func(ctx context.Context, w, i int) error {
		if probes[i] != 0 {
			_ = sys.revoke(ctx, w, probes[i])
		}
		return nil
	})
	base, err := sys.count(ctx)
	if err != nil {
		return fail(err)
	}
	// Aim the expiries past the end of the grants (estimated from the grant
	// throughput at 64 clients, with room to spare) plus etcd's minimum TTL.
	grantEst := time.Duration(float64(n) / max(grantRate, 500) * 1.5 * float64(time.Second))
	start := time.Now()
	target := start.Add(grantEst + 3*time.Second)
	var (
		mu             sync.Mutex
		minDue, maxDue time.Time
	)
	err = parallel(ctx, n, 128, func(ctx context.Context, w, _ int) error {
		sent := time.Now()
		ttl := target.Sub(sent)
		if _, ok := sys.(*etcdSystem); ok {
			ttl = time.Duration(etcdTTL(ttl)) * time.Second
		}
		if _, err := sys.grant(ctx, w, ttl); err != nil {
			return err
		}
		lo, hi := sent.Add(ttl), time.Now().Add(ttl)
		mu.Lock()
		if minDue.IsZero() || lo.Before(minDue) {
			minDue = lo
		}
		if hi.After(maxDue) {
			maxDue = hi
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("granting: %w", err))
	}
	res.GrantSeconds = round3(time.Since(start).Seconds())
	res.DueSpreadMs = ms(maxDue.Sub(minDue))
	if time.Now().After(minDue) {
		res.Error = "grants took longer than planned: some leases were due before all were granted"
	}
	li, err := sys.leader(ctx)
	if err != nil {
		return fail(err)
	}
	// Renewal latency during the storm, from one second before the first
	// lease is due.
	time.Sleep(max(time.Until(minDue.Add(-time.Second)), 0))
	pctx, stopProbe := context.WithCancel(ctx)
	probeRes := make(chan LoadResult, 1)
	go func() {
		probeRes <- pacedStreamLoad(pctx, sys, li, probes, kaStreams, 100*time.Millisecond, 0, time.Hour)
	}()
	time.Sleep(max(time.Until(maxDue), 0))
	// etcd revokes about 1,000 leases/s: give it half as long again, and
	// no more, so that the full run keeps to its time.
	deadline := maxDue.Add(time.Duration(n/1000*3/2+30) * time.Second)
	// No lease is revoked before the first one is due: that is the first
	// point of the falling count.
	var (
		done, prevAt = time.Time{}, minDue
		prevCount    = base + n
	)
	for time.Now().Before(deadline) {
		s := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := sys.count(cctx)
		cancel()
		if err == nil && c <= base {
			done = time.Now()
			res.PollResolutionM = ms(done.Sub(prevAt))
			break
		}
		// A count lists every lease (etcd has no cheaper way): poll at
		// most a fifth of the time, so that polling does not slow the
		// revokes it is waiting for. But while the count falls, aim the
		// next count at the finish that its rate predicts (never sooner
		// than the last count took): the finish is known only to the gap
		// between two counts (reported as the resolution), and a count of
		// a large table takes long enough to leave gaps of a second.
		took := time.Since(s)
		wait := max(50*time.Millisecond, 5*took) - took
		if err == nil && c < prevCount {
			rate := float64(prevCount-c) / s.Sub(prevAt).Seconds()
			eta := time.Duration(float64(c-base)/rate*float64(time.Second)) - took
			wait = min(wait, max(eta, took, 10*time.Millisecond))
		}
		if err == nil {
			prevAt, prevCount = s, c
		}
		time.Sleep(wait)
	}
	stopProbe()
	pr := <-probeRes
	res.RenewP50Ms, res.RenewP99Ms, res.RenewErrors = pr.P50Ms, pr.P99Ms, pr.Errors
	if done.IsZero() {
		return fail(fmt.Errorf("leases still present %v after due", time.Since(maxDue).Round(time.Second)))
	}
	res.RevokedAfterMs = ms(done.Sub(maxDue))
	fmt.Fprintf(os.Stderr, "  %-13s expiry of %d: all revoked %.0f ms after due (spread %.0f ms), renew p99 %.2f ms\n",
		sys.name(), n, res.RevokedAfterMs, res.DueSpreadMs, res.RenewP99Ms)
	return res
}

// MemoryResult is the leader's RSS growth from granting many leases.
type MemoryResult struct {
	Leases          int     `json:"leases"`
	Granted         int     `json:"granted"` // by this step: the table held Leases-Granted before it
	LeaderNode      string  `json:"leader_node"`
	RSSBeforeMiB    float64 `json:"rss_before_mib"` // the leader's with an empty table
	RSSAfterMiB     float64 `json:"rss_after_mib"`
	PerHundredKMiB  float64 `json:"mib_per_100k_leases"`
	GrantsPerSecond float64 `json:"grants_per_sec"`
	Error           string  `json:"error,omitempty"`
}

// rssBaseline is every live node's VmRSS with an empty table, by process
// ID: the growth at a table size is the leader's VmRSS then minus its own
// here, whichever node leads by then.
type rssBaseline map[int]int64

func baseline(sys system) rssBaseline {
	b := rssBaseline{}
	for _, n := range sys.nodes() {
		if n.alive() {
			if kib, err := rssKiB(n.pid()); err == nil {
				b[n.pid()] = kib
			}
		}
	}
	return b
}

// memory grants long-lived leases (clients at a time) until the table holds
// n (it held had) and reports the leader's VmRSS growth from its own VmRSS
// in base. The leases stay, as the background of the scale failover and of
// the next table size.
func memory(ctx context.Context, sys system, base rssBaseline, had, n, clients int) (res MemoryResult) {
	res.Leases, res.Granted = n, n-had
	fail := func(err error) MemoryResult {
		res.Error = err.Error()
		fmt.Fprintf(os.Stderr, "  %s memory: %v\n", sys.name(), err)
		return res
	}
	start := time.Now()
	if err := parallel(ctx, n-had, clients, func(ctx context.Context, w, _ int) error {
		_, err := sys.grant(ctx, w, longTTL)
		return err
	}); err != nil {
		return fail(fmt.Errorf("granting: %w", err))
	}
	res.GrantsPerSecond = round1(float64(n-had) / time.Since(start).Seconds())
	// Let in-flight work (log compaction, snapshots) settle before reading.
	time.Sleep(3 * time.Second)
	li, err := sys.leader(ctx)
	if err != nil {
		return fail(err)
	}
	nd := sys.nodes()[li]
	res.LeaderNode = nd.name
	before, ok := base[nd.pid()]
	if !ok {
		return fail(fmt.Errorf("leader %s was restarted since the table was empty: no RSS to compare with", nd.name))
	}
	after, err := rssKiB(nd.pid())
	if err != nil {
		return fail(err)
	}
	res.RSSBeforeMiB, res.RSSAfterMiB = round3(float64(before)/1024), round3(float64(after)/1024)
	res.PerHundredKMiB = round3(float64(after-before) / 1024 / float64(n) * 100_000)
	fmt.Fprintf(os.Stderr, "  %-13s memory: leader RSS %.0f -> %.0f MiB for %d leases (%.1f MiB per 100k), %.0f grants/s\n",
		sys.name(), res.RSSBeforeMiB, res.RSSAfterMiB, n, res.PerHundredKMiB, res.GrantsPerSecond)
	return res
}
