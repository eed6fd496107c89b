package lessor

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks run on the real clock (no synctest bubble). Run with:
//
//	go test -bench . -benchmem -run '^$' -benchtime 3x ./lessor/
//
// (Grant, Renew and Lookup want the default -benchtime or e.g. 200000x.)

// jumpClock is the real clock plus an offset that a benchmark can advance,
// to make many leases due at one instant.
type jumpClock struct{ off atomic.Int64 }

func (c *jumpClock) Now() time.Time       { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *jumpClock) jump(d time.Duration) { c.off.Add(int64(d)) }

func BenchmarkGrant(b *testing.B) {
	for _, primary := range []bool{false, true} {
		b.Run(fmt.Sprintf("primary=%v", primary), func(b *testing.B) {
			le := newTest(b, Config{})
			if primary {
				le.Promote(0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := le.Grant(LeaseID(i+1), 600_000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func grantN(b *testing.B, le Lessor, n int, ttl int64) {
	for i := 1; i <= n; i++ {
		if _, err := le.Grant(LeaseID(i), ttl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenew renews random leases of 100,000 on a primary.
func BenchmarkRenew(b *testing.B) {
	const n = 100_000
	le := newTest(b, Config{})
	le.Promote(0)
	grantN(b, le, n, 600_000) // granted on the primary: no post-Promote checkpoint
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]LeaseID, 1<<16)
	for i := range ids {
		ids[i] = LeaseID(1 + rng.IntN(n))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := le.Renew(ids[i&(len(ids)-1)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenewParallel(b *testing.B) {
	const n = 100_000
	le := newTest(b, Config{})
	le.Promote(0)
	grantN(b, le, n, 600_000)
	b.ReportAllocs()
	b.ResetTimer()
	var seed atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 0))
		for pb.Next() {
			if _, err := le.Renew(LeaseID(1 + rng.IntN(n))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	const n = 100_000
	le := newTest(b, Config{})
	le.Promote(0)
	grantN(b, le, n, 600_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if le.Lookup(LeaseID(1+i%n)) == nil {
			b.Fatal("not found")
		}
	}
}

// BenchmarkExpire100k measures the real time from the moment 100,000 leases
// become due together until all of them have been received from
// ExpiredLeasesC. "raw" has no rate limit (a negative RevokeRate, which only
// package-internal construction allows); "default-rate" runs at
// DefaultRevokeRate, so it is bound by about (100,000 - BatchSize) / rate.
func BenchmarkExpire100k(b *testing.B) {
	for _, tc := range []struct {
		name string
		rate int
	}{{"raw", -1}, {"default-rate", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 100_000
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				clk := &jumpClock{}
				le := newLessor(Config{RevokeRate: tc.rate, RetryInterval: time.Hour, Clock: clk})
				le.Promote(0)
				grantN(b, le, n, 60_000)
				runtime.GC()
				b.StartTimer()
				clk.jump(61 * time.Second)
				le.kick()
				got := 0
				for got < n {
					got += len(<-le.ExpiredLeasesC())
				}
				b.StopTimer()
				le.Stop()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/100k")
		})
	}
}

// BenchmarkPromote1M promotes a follower holding 1,000,000 leases and waits
// until the sweep has scheduled every lease. A concurrent goroutine renews
// random leases in a loop throughout and reports the longest single Renew
// call (rule 5: Promote must not stall renewals), and the longest Promote
// call itself (the server holds its term lock across it). A reader drains
// CheckpointsC as the server would, so the post-Promote checkpoint round runs
// too.
func BenchmarkPromote1M(b *testing.B) {
	const n = 1_000_000
	le := newTest(b, Config{})
	grantN(b, le, n, 600_000)
	stopDrain := make(chan struct{})
	var drained sync.WaitGroup
	drained.Add(1)
	go func() {
		defer drained.Done()
		for {
			select {
			case <-le.CheckpointsC():
			case <-stopDrain:
				return
			}
		}
	}()
	defer func() { close(stopDrain); drained.Wait() }()
	runtime.GC()

	var maxStall, renews atomic.Int64
	var promoteCall time.Duration // the call itself, which the server's term lock waits for
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stop := renewAtRandom(le, n, uint64(i), &maxStall, &renews)
		t0 := time.Now()
		le.Promote(time.Second)
		promoteCall = max(promoteCall, time.Since(t0))
		for {
			le.mu.RLock()
			swept := le.expHeap.Len() == len(le.leases)
			le.mu.RUnlock()
			if swept {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		stop()
		le.Demote()
		runtime.GC()
		b.StartTimer()
	}
	b.ReportMetric(float64(maxStall.Load()), "max-renew-stall-ns")
	b.ReportMetric(float64(renews.Load())/float64(b.N), "renews/op")
	b.ReportMetric(float64(promoteCall), "max-promote-call-ns")
}

// BenchmarkState1M copies a million leases' replicated state (what a
// snapshot or the state hash costs) while renewals run, and reports the
// longest renewal: the copy must not hold them up for its whole length.
func BenchmarkState1M(b *testing.B) {
	benchPassWhileRenewing(b, "State", func(le *lessor) int { return len(le.State()) })
}

// BenchmarkLeases1M lists a million leases (what GET /v1/leases and the
// Leases RPC cost) while renewals run, and reports the longest renewal.
func BenchmarkLeases1M(b *testing.B) {
	benchPassWhileRenewing(b, "Leases", func(le *lessor) int { return len(le.Leases()) })
}

// benchPassWhileRenewing runs pass, a pass over a primary's million leases
// that returns how many it saw, while another goroutine renews, and reports
// the longest renewal.
func benchPassWhileRenewing(b *testing.B, name string, pass func(*lessor) int) {
	const n = 1_000_000
	le := newTest(b, Config{})
	grantN(b, le, n, 600_000)
	le.Promote(time.Second)
	runtime.GC()
	var maxStall, renews atomic.Int64
	stop := renewAtRandom(le, n, 1, &maxStall, &renews)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if got := pass(le); got != n {
			b.Fatalf("%s returned %d leases, want %d", name, got, n)
		}
	}
	b.StopTimer()
	stop()
	b.ReportMetric(float64(maxStall.Load()), "max-renew-stall-ns")
}

// renewAtRandom renews random leases among 1..n in a loop until stop is
// called, noting the longest renewal in maxStall and counting renewals.
func renewAtRandom(le *lessor, n int, seed uint64, maxStall, renews *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 9))
		for {
			select {
			case <-done:
				return
			default:
			}
			t0 := time.Now()
			le.Renew(LeaseID(1 + rng.IntN(n))) // ErrResetRequired once checkpointed: fine
			d := int64(time.Since(t0))
			renews.Add(1)
			if d > maxStall.Load() {
				maxStall.Store(d)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// BenchmarkMemoryPerLease reports the heap bytes one lease with two attached
// items costs on a primary (the item key strings themselves excluded: they
// are allocated by the caller before the measurement).
func BenchmarkMemoryPerLease(b *testing.B) {
	const n = 100_000
	keys := make([]string, 2*n)
	for i := range keys {
		keys[i] = fmt.Sprintf("/locks/service-%07d", i)
	}
	var perLease float64
	for i := 0; i < b.N; i++ {
		le := newLessor(Config{})
		le.Promote(0)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for j := 1; j <= n; j++ {
			if _, err := le.Grant(LeaseID(j), 600_000); err != nil {
				b.Fatal(err)
			}
			if err := le.Attach(LeaseID(j), []LeaseItem{{keys[2*j-2]}, {keys[2*j-1]}}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perLease = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		runtime.KeepAlive(le)
		le.Stop()
	}
	b.ReportMetric(perLease, "bytes/lease")
}
