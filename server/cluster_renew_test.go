package server

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// renewConfirmations scrapes a node's /metrics for the renewal batches
// confirmed by raft's quorum contacts and by quorum rounds.
func renewConfirmations(t *testing.T, n *Node) (byLease, byRound float64) {
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

// renewOverStream renews id once over st and reports whether it was
// acknowledged.
func renewOverStream(st leasepb.Leases_KeepAliveClient, id lessor.LeaseID) bool {
	if err := st.Send(&leasepb.KeepAliveRequest{Id: int64(id)}); err != nil {
		return false
	}
	resp, err := st.Recv()
	return err == nil && resp.GetError() == "" && resp.GetTtlMs() > 0
}

// TestClusterRenewLeaseBound (rule 2): while raft's heartbeats reach a
// quorum, renewals (unary and over KeepAlive streams) are acknowledged
// without a quorum round of their own; once the leader is cut off, no
// renewal that started RenewLease or more after the last possible quorum
// contact is acknowledged, even though raft itself keeps leading for up to
// LeaderLeaseTimeout (set to its longest here).
func TestClusterRenewLeaseBound(t *testing.T) {
	const renewLease = 80 * time.Millisecond
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.RenewLease = renewLease
		cfg.LeaderLeaseTimeout = testElection
		cfg.HTTPAddr = "127.0.0.1:0"
	})
	li, ld := c.leader()
	ctx := ctxT(t)
	ids := grantMany(t, ld, 2, 10*time.Second)
	unary, streamed := ids[0], ids[1]
	st, err := leasepb.NewLeasesClient(dial(t, ld.Addr())).KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for i := range 200 {
		if _, err := renewOne(ctx, ld, unary); err != nil {
			t.Fatalf("renewal %d with a healthy quorum: %v", i, err)
		}
	}
	afterUnary, _ := renewConfirmations(t, ld)
	for i := range 200 {
		if !renewOverStream(st, streamed) {
			t.Fatalf("stream renewal %d with a healthy quorum failed", i)
		}
	}
	byLease, byRound := renewConfirmations(t, ld)
	t.Logf("healthy: %v renewal batches confirmed by quorum contacts (%v of them on the stream), %v by rounds", byLease, byLease-afterUnary, byRound)
	if afterUnary == 0 || byLease == afterUnary {
		t.Fatalf("raft's quorum contacts confirmed %v unary and %v stream batches; want some of each", afterUnary, byLease-afterUnary)
	}

	// The stream is renewed closed-loop in the background: each
	// acknowledgement answers the one renewal in flight.
	type ack struct{ sent time.Time }
	acks := make(chan ack, 1<<16)
	go func() {
		defer close(acks)
		for {
			sent := time.Now()
			if !renewOverStream(st, streamed) {
				return // the leader ended the stream when it stepped down
			}
			acks <- ack{sent}
		}
	}()
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
		_, err := renewOne(rctx, ld, unary)
		cancel()
		if err == nil {
			lastOK, acked = start, acked+1
		}
	}
	t.Logf("after the cut-off: %d unary renewals acknowledged, the last started %v after it", acked, lastOK.Sub(cutOff))
	if !lastOK.IsZero() && lastOK.Sub(cutOff) >= renewLease {
		t.Fatalf("a renewal started %v after the last quorum contact was acknowledged (renew lease %v)", lastOK.Sub(cutOff), renewLease)
	}
	var lastStream time.Time
	for a := range acks { // ends when the stream does: the step-down ends it
		lastStream = a.sent
	}
	t.Logf("the last stream renewal acknowledged was sent %v after the cut-off", lastStream.Sub(cutOff))
	if lastStream.Sub(cutOff) >= renewLease {
		t.Fatalf("a stream renewal sent %v after the last quorum contact was acknowledged (renew lease %v)", lastStream.Sub(cutOff), renewLease)
	}
}
