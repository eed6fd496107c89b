package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// The renewal stream drivers. Both keep each lease to one renewal in flight
// (send, wait for its acknowledgement, send again), over a few streams that
// each carry many leases, and measure latency from send to acknowledgement.

// errStreamBroken tells a lease's worker that its stream is gone.
var errStreamBroken = errors.New("renewal stream broken")

// pacedStreamLoad renews every lease in ids from its own goroutine, one
// renewal of it every interval (send, wait for that lease's acknowledgement,
// wait out the interval, repeat), over `streams` streams to node i. Latency
// is send to acknowledgement of one renewal.
func pacedStreamLoad(ctx context.Context, sys system, i int, ids []int64, streams int, interval, warm, dur time.Duration) LoadResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	rec := newRecorder(start.Add(warm), start.Add(warm+dur))
	type stream struct {
		rs   renewStream
		mu   sync.Mutex // serialises send
		acks map[int64]chan error
		dead chan struct{}
		err  error
	}
	ss := make([]*stream, streams)
	for k := range ss {
		rs, err := sys.openStream(ctx, i)
		if err != nil {
			return LoadResult{Clients: len(ids), FirstError: err.Error()}
		}
		ss[k] = &stream{rs: rs, acks: map[int64]chan error{}, dead: make(chan struct{})}
	}
	for j, id := range ids {
		ss[j%streams].acks[id] = make(chan error, 1)
	}
	for _, s := range ss {
		go func() {
			for {
				id, err := s.rs.recv()
				if ch, ok := s.acks[id]; ok && (err == nil || errors.Is(err, errNotFound) || id != 0) {
					select {
					case ch <- err:
					default:
					}
					continue
				}
				if err != nil {
					s.err = err
					close(s.dead)
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for j, id := range ids {
		s := ss[j%streams]
		ch := s.acks[id]
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(rec.to) {
				t0 := time.Now()
				s.mu.Lock()
				err := s.rs.send(id)
				s.mu.Unlock()
				if err == nil {
					select {
					case err = <-ch:
					case <-s.dead:
						err = fmt.Errorf("%w: %v", errStreamBroken, s.err)
					case <-time.After(opTimeout):
						err = errors.New("renewal unanswered")
					case <-ctx.Done():
						return
					}
				}
				rec.add(t0, time.Since(t0), err)
				if err != nil && (errors.Is(err, errStreamBroken) || s.err != nil) {
					return
				}
				select {
				case <-time.After(interval - time.Since(t0)):
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	return rec.result(len(ids))
}

// streamLoad renews every lease in ids back to back over `streams` streams
// to node i: the moment a lease's acknowledgement arrives, the goroutine that
// received it records it and sends that lease's next renewal. One goroutine
// per stream does all of its receiving and sending, so the load generator
// spends no goroutine hand-off or timer per renewal: it shares the machine
// with the cluster under test, and the CPU it saves goes to the system being
// measured (both systems alike). A stream with renewals in flight that
// acknowledges nothing for opTimeout ends the workload as unanswered; a
// broken stream is an error whenever it happens, in the measured interval
// or not.
func streamLoad(ctx context.Context, sys system, i int, ids []int64, streams int, warm, dur time.Duration) LoadResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	from, to := start.Add(warm), start.Add(warm+dur)
	type stream struct {
		rs      renewStream
		ids     []int64
		rec     *recorder
		lastAck atomic.Int64 // unix nanoseconds of the last acknowledgement
		done    atomic.Bool
	}
	ss := make([]*stream, streams)
	for k := range ss {
		rs, err := sys.openStream(ctx, i)
		if err != nil {
			return LoadResult{Clients: len(ids), FirstError: err.Error()}
		}
		ss[k] = &stream{rs: rs, rec: newRecorder(from, to)}
		ss[k].lastAck.Store(start.UnixNano())
	}
	for j, id := range ids {
		ss[j%streams].ids = append(ss[j%streams].ids, id)
	}
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Go(func() {
			defer s.done.Store(true)
			sent := make(map[int64]time.Time, len(s.ids))
			for _, id := range s.ids {
				sent[id] = time.Now()
				if err := s.rs.send(id); err != nil {
					s.rec.fail(fmt.Errorf("%w: %v", errStreamBroken, err))
					return
				}
			}
			for len(sent) > 0 {
				id, err := s.rs.recv()
				now := time.Now()
				s.lastAck.Store(now.UnixNano())
				t0, ok := sent[id]
				if !ok {
					if ctx.Err() != nil {
						return // the watchdog (or the caller) ended the workload
					}
					if err == nil {
						err = fmt.Errorf("acknowledgement of lease %d, not in flight", id)
					}
					s.rec.fail(fmt.Errorf("%w: %v", errStreamBroken, err))
					return
				}
				s.rec.add(t0, now.Sub(t0), err)
				if ctx.Err() != nil || !now.Before(to) {
					delete(sent, id)
					continue
				}
				sent[id] = now
				if err := s.rs.send(id); err != nil {
					s.rec.fail(fmt.Errorf("%w: %v", errStreamBroken, err))
					return
				}
			}
		})
	}
	// The watchdog: a stream stuck for opTimeout ends the workload (its
	// renewals count as errors); cancelling ctx breaks every stream's recv.
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			for _, s := range ss {
				if !s.done.Load() && time.Since(time.Unix(0, s.lastAck.Load())) > opTimeout {
					s.rec.fail(errors.New("renewal unanswered"))
					cancel()
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-stopped
	rec := newRecorder(from, to)
	for _, s := range ss {
		rec.merge(s.rec)
	}
	return rec.result(len(ids))
}

// connPool caches one raw gRPC connection per address.
type connPool struct {
	tls *tls.Config // nil: plaintext
	// fast: reconnect every 10 ms, not on gRPC's backoff (1 s and growing):
	// a node that restarts is seen as soon as it listens.
	fast  bool
	mu    sync.Mutex // guards conns
	conns map[string]*grpc.ClientConn
}

func (p *connPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds(p.tls))}
	if p.fast {
		opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second,
			Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1, MaxDelay: 10 * time.Millisecond}}))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = cc
	return cc, nil
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cc := range p.conns {
		cc.Close()
	}
}
