package main

import (
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasecluster/leasecluster/server"
)

// TestNodeFlagsReachConfig: the node flags that bound what clients may ask
// (TTL range, quotas) land in server.Config, where the leader checks them
// before it proposes.
func TestNodeFlagsReachConfig(t *testing.T) {
	var nf nodeFlags
	cmd := &cobra.Command{Use: "x"}
	nf.register(cmd)
	if err := cmd.Flags().Parse([]string{"--max-ttl", "2h", "--min-ttl", "3s", "--max-leases", "7", "--max-items-per-lease", "3"}); err != nil {
		t.Fatal(err)
	}
	var cfg server.Config
	nf.apply(&cfg)
	if cfg.MaxTTL != 2*time.Hour || cfg.MinTTL != 3*time.Second || cfg.MaxLeases != 7 || cfg.MaxItemsPerLease != 3 {
		t.Fatalf("config: max TTL %v, min TTL %v, max leases %d, max items %d", cfg.MaxTTL, cfg.MinTTL, cfg.MaxLeases, cfg.MaxItemsPerLease)
	}
	var defaults server.Config
	var nf2 nodeFlags
	cmd2 := &cobra.Command{Use: "y"}
	nf2.register(cmd2)
	nf2.apply(&defaults)
	if defaults.MaxLeases != server.DefaultMaxLeases || defaults.MaxItemsPerLease != server.DefaultMaxItemsPerLease || defaults.MaxTTL != 0 {
		t.Fatalf("defaults: %+v", defaults)
	}
}
