package server

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// Benchmarks of the replicated paths on an in-process three-node cluster
// (real raft-boltdb files with fsync, real gRPC between nodes). The nodes
// share this process's CPUs, so compare runs, not absolute figures; the
// side-by-side comparison with etcd is in bench/.

// cpuTime is the CPU time (user and system) this process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start, of the whole
// process (all three nodes and the client): steadier than ns/op on a shared
// machine whose speed drifts, and what a change to a path costs in total.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

func benchCluster(b *testing.B) *Node {
	c := newTestCluster(b, 3, nil)
	_, ld := c.leader()
	return ld
}

func BenchmarkClusterGrant(b *testing.B) {
	ld := benchCluster(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := ld.ops.grant(ctx, 0, 60_000, 0); err != nil {
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
			if _, _, err := ld.ops.grant(ctx, 0, 60_000, 0); err != nil {
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
		id, _, err := ld.ops.grant(ctx, 0, 60_000, 0)
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
			if _, err := renewOne(ctx, ld, id); err != nil {
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
	id, _, err := ld.ops.grant(ctx, 0, 60_000, 0)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := renewOne(ctx, ld, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClusterKeepAliveStream renews 64 leases closed loop (send, wait
// for the acknowledgement, repeat) over 4 KeepAlive streams to the leader:
// the bench's "keepalive 64 leases (leader)" workload, in one process.
func BenchmarkClusterKeepAliveStream(b *testing.B) {
	ld := benchCluster(b)
	ctx := context.Background()
	const streams, perStream = 4, 16
	cli := leasepb.NewLeasesClient(dial(b, ld.Addr()))
	var left atomic.Int64
	left.Store(int64(b.N))
	type st struct {
		s   leasepb.Leases_KeepAliveClient
		ids []lessor.LeaseID
	}
	var sts []st
	for range streams {
		s, err := cli.KeepAlive(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var ids []lessor.LeaseID
		for range perStream {
			id, _, err := ld.ops.grant(ctx, 0, 60_000, 0)
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		sts = append(sts, st{s, ids})
	}
	b.ResetTimer()
	cpu0 := cpuTime(b)
	var wg sync.WaitGroup
	for _, x := range sts {
		wg.Go(func() {
			defer x.s.CloseSend()
			inflight := 0
			for _, id := range x.ids {
				if left.Add(-1) < 0 {
					break
				}
				if err := x.s.Send(&leasepb.KeepAliveRequest{Id: int64(id)}); err != nil {
					b.Error(err)
					return
				}
				inflight++
			}
			for inflight > 0 {
				r, err := x.s.Recv()
				if err != nil || r.Error != "" {
					b.Error(err, r.GetError())
					return
				}
				inflight--
				if left.Add(-1) < 0 {
					continue
				}
				if err := x.s.Send(&leasepb.KeepAliveRequest{Id: r.Id}); err != nil {
					b.Error(err)
					return
				}
				inflight++
			}
		})
	}
	wg.Wait()
	reportCPU(b, cpu0)
}
