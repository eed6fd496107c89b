package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// errStop ends one worker of a closed loop early (a revoke pool ran dry).
var errStop = errors.New("stop")

// opTimeout bounds one operation, so a stuck request shows up as an error
// instead of hanging the benchmark.
const opTimeout = 5 * time.Second

// LoadResult is one system's figures for one workload.
type LoadResult struct {
	Clients    int     `json:"clients"`
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"ops_per_sec"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	// CPU time over the measured interval of the system's node processes
	// (all of them) and of the benchmark process (the load generator).
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
	LoadCPUSeconds   float64 `json:"loadgen_cpu_s,omitempty"`
	Note             string  `json:"note,omitempty"`
	FirstError       string  `json:"first_error,omitempty"`
}

// recorder collects latencies from many goroutines; only samples that start
// inside [from, to) count, so warm-up and wind-down stay out of the figures.
type recorder struct {
	from, to time.Time

	mu       sync.Mutex
	lat      []time.Duration
	errs     int
	firstErr error
	lastEnd  time.Time
}

func newRecorder(from, to time.Time) *recorder { return &recorder{from: from, to: to} }

func (r *recorder) add(start time.Time, d time.Duration, err error) {
	if start.Before(r.from) || !start.Before(r.to) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failLocked(err)
		return
	}
	r.lat = append(r.lat, d)
	if end := start.Add(d); end.After(r.lastEnd) {
		r.lastEnd = end
	}
}

// fail records an error that belongs to no one operation's start (a broken
// stream, a stuck one), whenever it happened.
func (r *recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failLocked(err)
}

func (r *recorder) failLocked(err error) {
	r.errs++
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// merge adds o's samples to r's (o is no longer written to).
func (r *recorder) merge(o *recorder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, o.lat...)
	r.errs += o.errs
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
	if o.lastEnd.After(r.lastEnd) {
		r.lastEnd = o.lastEnd
	}
}

// result summarises the samples. The measured interval ends at r.to, or
// earlier if every worker stopped early (then at the last completion).
func (r *recorder) result(clients int) LoadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := r.to
	if r.lastEnd.Before(end) && !r.lastEnd.IsZero() {
		end = r.lastEnd
	}
	secs := end.Sub(r.from).Seconds()
	res := LoadResult{Clients: clients, Ops: len(r.lat), Errors: r.errs, Seconds: round3(secs)}
	if r.firstErr != nil {
		res.FirstError = r.firstErr.Error()
	}
	if len(r.lat) == 0 || secs <= 0 {
		return res
	}
	res.Throughput = round1(float64(len(r.lat)) / secs)
	res.P50Ms, res.P99Ms = percentileMs(r.lat, 0.50), percentileMs(r.lat, 0.99)
	return res
}

// percentileMs sorts lat in place and returns its q-quantile in milliseconds.
func percentileMs(lat []time.Duration, q float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	i := min(int(q*float64(len(lat))), len(lat)-1)
	return round3(float64(lat[i]) / float64(time.Millisecond))
}

// closedLoop runs conc workers, each issuing op back to back for warm+dur;
// samples of the first warm are discarded. op gets the worker index so it can
// pick a client connection; errStop ends that worker.
func closedLoop(ctx context.Context, conc int, warm, dur time.Duration, op func(ctx context.Context, w int) error) LoadResult {
	start := time.Now()
	rec := newRecorder(start.Add(warm), start.Add(warm+dur))
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(rec.to) {
				t0 := time.Now()
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				err := op(octx, w)
				cancel()
				if errors.Is(err, errStop) {
					return
				}
				rec.add(t0, time.Since(t0), err)
			}
		})
	}
	wg.Wait()
	return rec.result(conc)
}

// parallel runs f for i in [0, n) on conc goroutines and returns the first error.
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, w, i int) error) error {
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for w := range conc {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := i >= n || first != nil
				mu.Unlock()
				if stop || ctx.Err() != nil {
					return
				}
				if err := f(ctx, w, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }
