package leasecluster_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/server"
)

// renewConfirmations scrapes a node's /metrics for the renewal batches
// confirmed by raft's quorum contacts and by quorum rounds.
func renewConfirmations(t *testing.T, n *server.Node) (byLease, byRound float64) {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case `leasecluster_renewal_confirmations_total{by="lease"}`:
			byLease = v
		case `leasecluster_renewal_confirmations_total{by="round"}`:
			byRound = v
		}
	}
	return byLease, byRound
}

// TestClusterRenewLeaseBound (rule 2): while raft's heartbeats reach a
// quorum, renewals are acknowledged without a quorum round of their own; once
// the leader is cut off, no renewal that started RenewLease or more after the
// last possible quorum contact is acknowledged, even though raft itself
// keeps leading for up to LeaderLeaseTimeout (set to its longest here).
func TestClusterRenewLeaseBound(t *testing.T) {
	const renewLease = 80 * time.Millisecond
	c := newTestCluster(t, 3, func(cfg *server.Config) {
		cfg.RenewLease = renewLease
		cfg.LeaderLeaseTimeout = testElection
		cfg.HTTPAddr = "127.0.0.1:0"
	})
	li, ld := c.leader()
	ctx := ctxT(t)
	id := grantMany(t, ld, 1, 10*time.Second)[0]

	for i := range 200 {
		if _, err := ld.Renew(ctx, id); err != nil {
			t.Fatalf("renewal %d with a healthy quorum: %v", i, err)
		}
	}
	byLease, byRound := renewConfirmations(t, ld)
	t.Logf("healthy: %v renewal batches confirmed by quorum contacts, %v by rounds", byLease, byRound)
	if byLease == 0 {
		t.Fatal("no renewal was confirmed by raft's quorum contacts")
	}

	for i := range c.running() {
		if i != li {
			c.kill(i)
		}
	}
	cutOff := time.Now() // no follower can answer a request sent after this
	var lastOK time.Time
	acked := 0
	for time.Since(cutOff) < 2*time.Second && ld.IsLeader() {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := ld.Renew(rctx, id)
		cancel()
		if err == nil {
			lastOK, acked = start, acked+1
		}
	}
	t.Logf("after the cut-off: %d renewals acknowledged, the last started %v after it", acked, lastOK.Sub(cutOff))
	if !lastOK.IsZero() && lastOK.Sub(cutOff) >= renewLease {
		t.Fatalf("a renewal started %v after the last quorum contact was acknowledged (renew lease %v)", lastOK.Sub(cutOff), renewLease)
	}
}
