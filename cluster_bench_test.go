package leasecluster_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/server"
)

// Benchmarks of the replicated paths on an in-process three-node cluster
// (real raft-boltdb files with fsync, real gRPC between nodes). The nodes
// share this process's CPUs, so compare runs, not absolute figures; the
// side-by-side comparison with etcd is in bench/.

func benchCluster(b *testing.B) *server.Node {
	c := newTestCluster(b, 3, nil)
	_, ld := c.leader()
	return ld
}

func BenchmarkClusterGrant(b *testing.B) {
	ld := benchCluster(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := ld.Grant(ctx, 0, 60_000, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClusterGrantParallel64(b *testing.B) {
	ld := benchCluster(b)
	ctx := context.Background()
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := ld.Grant(ctx, 0, 60_000, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkClusterRenew(b *testing.B) {
	ld := benchCluster(b)
	ctx := context.Background()
	ids := make([]lessor.LeaseID, 64)
	for i := range ids {
		id, _, err := ld.Grant(ctx, 0, 60_000, 0)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)%int64(len(ids))]
			if _, err := ld.Renew(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClusterRenewSerial is the latency of one renewal: the lessor update
// plus one leadership confirmation (a heartbeat round to the followers).
func BenchmarkClusterRenewSerial(b *testing.B) {
	ld := benchCluster(b)
	ctx := context.Background()
	id, _, err := ld.Grant(ctx, 0, 60_000, 0)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ld.Renew(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}
