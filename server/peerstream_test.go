package server

import (
	"fmt"
	"testing"
	"time"
)

// TestClusterPipelineStreams: on a plaintext port, the leader replicates to
// each follower over one pipeline stream (not a gRPC stream); after a leader
// change the old leader's streams end and the new leader's take over.
func TestClusterPipelineStreams(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	for round := range 2 {
		li, ld := c.leader()
		if _, _, err := ld.ops.grant(ctx, 0, 10_000, 0); err != nil {
			t.Fatal(err)
		}
		if err := eventually(5*time.Second, func() error {
			for i, n := range c.running() {
				want := 1
				if i == li {
					want = 0
				}
				if got := n.rs.trans.ServedStreams(); got != want {
					return fmt.Errorf("round %d: %s serves %d pipeline streams, want %d", round, n.Name(), got, want)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if err := ld.TransferLeadership(); err != nil {
				t.Fatalf("transfer: %v", err)
			}
			c.leaderOtherThan(ld)
		}
	}
}
