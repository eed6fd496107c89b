package server

import (
	"errors"
	"fmt"
	"testing"

	"github.com/leasecluster/leasecluster/lessor"
)

// TestQuotas: a grant beyond --max-leases and a new item beyond
// --max-items-per-lease are refused with ErrQuotaExceeded (RESOURCE_EXHAUSTED)
// and change nothing; re-attaching a held item is no new item; a revoke frees
// room again.
func TestQuotas(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxLeases, cfg.MaxItemsPerLease = 2, 2 })
	_, ld := c.leader()
	ctx := ctxT(t)
	a, _, err := ld.ops.grant(ctx, 0, 10_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ld.ops.grant(ctx, 0, 10_000, 0); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := ld.ops.attach(ctx, a, fmt.Sprint("k", i), "v", 0); err != nil {
			t.Fatal(err)
		}
	}
	hash := c.converge()
	if _, _, err := ld.ops.grant(ctx, 0, 10_000, 0); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("third lease: %v, want ErrQuotaExceeded", err)
	}
	if _, err := ld.ops.attach(ctx, a, "k2", "v", 0); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("third item: %v, want ErrQuotaExceeded", err)
	}
	if got := c.converge(); got != hash {
		t.Fatal("refused requests changed the state")
	}
	if it, err := ld.ops.attach(ctx, a, "k1", "new value", 0); err != nil || it.Value != "new value" {
		t.Fatalf("re-attaching a held item at the quota: %+v %v", it, err)
	}
	if err := ld.ops.revoke(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ld.ops.grant(ctx, lessor.NoLease, 10_000, 0); err != nil {
		t.Fatalf("a grant after a revoke freed room: %v", err)
	}
}
