package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// clientsPerSystem is how many client objects (each with its own gRPC
// connections) a system's workers share, round robin, so that one HTTP/2
// connection is not the bottleneck of either system.
const clientsPerSystem = 4

var errNotFound = errors.New("lease not found")

// system is what the workloads need from a cluster under test. Both
// implementations go through the system's own Go client for unary calls and
// through a raw gRPC stream for renewals (see renewStream).
type system interface {
	name() string
	nodes() []*node
	grant(ctx context.Context, w int, ttl time.Duration) (int64, error)
	revoke(ctx context.Context, w int, id int64) error
	// timeToLive returns the remaining TTL (etcd: whole seconds) or errNotFound.
	timeToLive(ctx context.Context, w int, id int64) (time.Duration, error)
	count(ctx context.Context) (int, error)
	// leader returns the index (into nodes) of the live node that leads.
	leader(ctx context.Context) (int, error)
	// caughtUp returns nil once every live node has applied the leader's
	// commit index as it was at the call.
	caughtUp(ctx context.Context) error
	// indexes returns node i's applied and commit index, from its own status.
	indexes(ctx context.Context, i int) (applied, commit uint64, err error)
	// memberReady returns nil once node i would serve a linearizable read
	// itself: leasecluster's /readyz on that node (a leader known, what is
	// committed applied), etcd's linearizable range read through that node
	// alone.
	memberReady(ctx context.Context, i int) error
	// openStream opens a renewal stream to node i.
	openStream(ctx context.Context, i int) (renewStream, error)
	// keepAliveMany keeps ids alive with the system's client library (renewal
	// every TTL/3 on both) and reports acknowledgements and losses to t.
	keepAliveMany(ctx context.Context, ids []int64, t *ackTracker) error
	close()
}

// renewStream is one bidirectional renewal stream carrying many leases:
// leasecluster's Leases.KeepAlive or etcd's Lease.LeaseKeepAlive, the closest
// equivalents. Send is not safe for concurrent use.
type renewStream interface {
	send(id int64) error
	// recv returns the next acknowledged lease ID, or an error for a refused
	// renewal (errNotFound) or a broken stream.
	recv() (int64, error)
}

// ---- leasecluster ----

type lcSystem struct {
	ns      []*node
	clients []*client.Client

	conns  connPool // raw connections for renewal streams
	probes connPool // status reads of one node (fast reconnects)
	http   *http.Client
	prof   *http.Client // CPU profiles (no timeout)
	scheme string       // of the HTTP addresses: http, or https with -tls
}

func newLCSystem(ctx context.Context, ns []*node, t *benchTLS) (*lcSystem, error) {
	s := &lcSystem{ns: ns, conns: connPool{tls: t.lcConfig()}, probes: connPool{tls: t.lcConfig(), fast: true}, scheme: t.scheme(),
		http: &http.Client{Transport: httpTransport(t.lcConfig(), 512), Timeout: opTimeout},
		prof: &http.Client{Transport: httpTransport(t.lcConfig(), 0)}}
	var eps []string
	for _, n := range ns {
		eps = append(eps, n.clientEP)
	}
	var opts []client.Option
	if cfg := t.lcConfig(); cfg != nil {
		opts = append(opts, client.WithTLS(cfg))
	}
	for range clientsPerSystem {
		c, err := client.New(ctx, eps, opts...)
		if err != nil {
			s.close()
			return nil, err
		}
		s.clients = append(s.clients, c)
	}
	return s, nil
}

func (s *lcSystem) name() string           { return "leasecluster" }
func (s *lcSystem) nodes() []*node         { return s.ns }
func (s *lcSystem) c(w int) *client.Client { return s.clients[w%len(s.clients)] }

func (s *lcSystem) grant(ctx context.Context, w int, ttl time.Duration) (int64, error) {
	l, err := s.c(w).Grant(ctx, ttl)
	return l.ID, err
}

func (s *lcSystem) revoke(ctx context.Context, w int, id int64) error {
	return s.c(w).Revoke(ctx, id)
}

func (s *lcSystem) timeToLive(ctx context.Context, w int, id int64) (time.Duration, error) {
	info, err := s.c(w).TimeToLive(ctx, id, false)
	if errors.Is(err, client.ErrLeaseNotFound) {
		return 0, errNotFound
	}
	return info.Remaining, err
}

func (s *lcSystem) count(ctx context.Context) (int, error) {
	ls, err := s.clients[0].Leases(ctx)
	return len(ls), err
}

func (s *lcSystem) leader(ctx context.Context) (int, error) {
	for i, n := range s.ns {
		if !n.alive() {
			continue
		}
		st, err := s.clients[0].StatusOf(ctx, n.clientEP)
		if err == nil && st.GetRole() == "leader" {
			return i, nil
		}
	}
	return -1, errors.New("leasecluster: no leader")
}

func (s *lcSystem) caughtUp(ctx context.Context) error { return caughtUp(ctx, s) }

func (s *lcSystem) indexes(ctx context.Context, i int) (uint64, uint64, error) {
	cc, err := s.probes.get(s.ns[i].clientEP)
	if err != nil {
		return 0, 0, err
	}
	st, err := leasepb.NewClusterClient(cc).Status(ctx, &leasepb.StatusRequest{})
	return st.GetAppliedIndex(), st.GetCommitIndex(), err
}

func (s *lcSystem) memberReady(ctx context.Context, i int) error {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s://%s/readyz", s.scheme, s.ns[i].httpEP), nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /readyz: %d %s", s.ns[i].name, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// caughtUp is system.caughtUp over the nodes' own statuses.
func caughtUp(ctx context.Context, s system) error {
	li, err := s.leader(ctx)
	if err != nil {
		return err
	}
	_, commit, err := s.indexes(ctx, li)
	if err != nil {
		return err
	}
	for i, n := range s.nodes() {
		if !n.alive() {
			continue
		}
		applied, _, err := s.indexes(ctx, i)
		if err != nil {
			return err
		}
		if applied < commit {
			return fmt.Errorf("%s applied %d of %d", n.name, applied, commit)
		}
	}
	return nil
}

type lcStream struct {
	st leasepb.Leases_KeepAliveClient
}

func (s *lcSystem) openStream(ctx context.Context, i int) (renewStream, error) {
	cc, err := s.conns.get(s.ns[i].clientEP)
	if err != nil {
		return nil, err
	}
	st, err := leasepb.NewLeasesClient(cc).KeepAlive(ctx)
	if err != nil {
		return nil, err
	}
	return lcStream{st}, nil
}

func (l lcStream) send(id int64) error { return l.st.Send(&leasepb.KeepAliveRequest{Id: id}) }

func (l lcStream) recv() (int64, error) {
	r, err := l.st.Recv()
	if err != nil {
		return 0, err
	}
	switch {
	case r.GetError() == "NOT_FOUND":
		return r.GetId(), errNotFound
	case r.GetError() != "":
		return r.GetId(), fmt.Errorf("renewal refused: %s", r.GetError())
	}
	return r.GetId(), nil
}

// httpRenew renews through node i's HTTP/JSON API, which forwards a
// follower's renewal to the leader.
func (s *lcSystem) httpRenew(ctx context.Context, i int, id int64) error {
	req, err := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s://%s/v1/leases/%d/keepalive", s.scheme, s.ns[i].httpEP, id), nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("keepalive over HTTP: status %d", resp.StatusCode)
	}
	return nil
}

func (s *lcSystem) keepAliveMany(ctx context.Context, ids []int64, t *ackTracker) error {
	c := s.clients[0]
	kas := make([]*client.KeepAlive, len(ids))
	err := parallel(ctx, len(ids), 64, func(ctx context.Context, _, i int) error {
		k, err := c.KeepAlive(ctx, ids[i])
		kas[i] = k
		return err
	})
	if err != nil {
		return err
	}
	// The client library reports acknowledgements only as a moving local
	// deadline, so a poller turns those moves into ack events (5 ms resolution).
	go func() {
		last := make([]time.Time, len(kas))
		lost := make([]bool, len(kas))
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				for _, k := range kas {
					k.Close()
				}
				return
			case now := <-tick.C:
				for i, k := range kas {
					if d := k.Deadline(); d.After(last[i]) {
						last[i] = d
						t.ack(i, now)
					}
					if !lost[i] {
						select {
						case <-k.Lost():
							lost[i] = true
							t.lose(i, now)
						default:
						}
					}
				}
			}
		}
	}()
	return nil
}

func (s *lcSystem) close() {
	for _, c := range s.clients {
		c.Close()
	}
	s.conns.closeAll()
	s.probes.closeAll()
}

// ---- etcd ----

type etcdSystem struct {
	ns      []*node
	clients []*clientv3.Client

	conns  connPool
	probes connPool // status and readiness reads of one node (fast reconnects)
}

func newEtcdSystem(ns []*node, t *benchTLS) (*etcdSystem, error) {
	s := &etcdSystem{ns: ns, conns: connPool{tls: t.etcdConfig()}, probes: connPool{tls: t.etcdConfig(), fast: true}}
	var eps []string
	for _, n := range ns {
		eps = append(eps, n.clientEP)
	}
	for range clientsPerSystem {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: t.etcdConfig()})
		if err != nil {
			s.close()
			return nil, err
		}
		s.clients = append(s.clients, c)
	}
	return s, nil
}

func (s *etcdSystem) name() string             { return "etcd" }
func (s *etcdSystem) nodes() []*node           { return s.ns }
func (s *etcdSystem) c(w int) *clientv3.Client { return s.clients[w%len(s.clients)] }

// etcdTTL rounds a TTL up to etcd's whole seconds.
func etcdTTL(ttl time.Duration) int64 { return int64(math.Ceil(ttl.Seconds())) }

func (s *etcdSystem) grant(ctx context.Context, w int, ttl time.Duration) (int64, error) {
	r, err := s.c(w).Grant(ctx, etcdTTL(ttl))
	if err != nil {
		return 0, err
	}
	return int64(r.ID), nil
}

func (s *etcdSystem) revoke(ctx context.Context, w int, id int64) error {
	_, err := s.c(w).Revoke(ctx, clientv3.LeaseID(id))
	return err
}

func (s *etcdSystem) timeToLive(ctx context.Context, w int, id int64) (time.Duration, error) {
	r, err := s.c(w).TimeToLive(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && r.TTL < 0) {
		return 0, errNotFound
	}
	if err != nil {
		return 0, err
	}
	return time.Duration(r.TTL) * time.Second, nil
}

func (s *etcdSystem) count(ctx context.Context) (int, error) {
	r, err := s.clients[0].Leases(ctx)
	if err != nil {
		return 0, err
	}
	return len(r.Leases), nil
}

func (s *etcdSystem) leader(ctx context.Context) (int, error) {
	for i, n := range s.ns {
		if !n.alive() {
			continue
		}
		st, err := s.clients[0].Status(ctx, n.clientEP)
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return -1, errors.New("etcd: no leader")
}

func (s *etcdSystem) caughtUp(ctx context.Context) error { return caughtUp(ctx, s) }

func (s *etcdSystem) indexes(ctx context.Context, i int) (uint64, uint64, error) {
	cc, err := s.probes.get(s.ns[i].clientEP)
	if err != nil {
		return 0, 0, err
	}
	st, err := etcdserverpb.NewMaintenanceClient(cc).Status(ctx, &etcdserverpb.StatusRequest{})
	if err != nil {
		return 0, 0, err
	}
	return st.RaftAppliedIndex, st.RaftIndex, nil
}

// memberReady reads a key linearizably (etcd's default range) through
// node i alone.
func (s *etcdSystem) memberReady(ctx context.Context, i int) error {
	cc, err := s.probes.get(s.ns[i].clientEP)
	if err != nil {
		return err
	}
	_, err = etcdserverpb.NewKVClient(cc).Range(ctx, &etcdserverpb.RangeRequest{Key: []byte("bench-ready-probe")})
	return err
}

type etcdStream struct {
	st etcdserverpb.Lease_LeaseKeepAliveClient
}

func (s *etcdSystem) openStream(ctx context.Context, i int) (renewStream, error) {
	cc, err := s.conns.get(s.ns[i].clientEP)
	if err != nil {
		return nil, err
	}
	st, err := etcdserverpb.NewLeaseClient(cc).LeaseKeepAlive(ctx)
	if err != nil {
		return nil, err
	}
	return etcdStream{st}, nil
}

func (e etcdStream) send(id int64) error {
	return e.st.Send(&etcdserverpb.LeaseKeepAliveRequest{ID: id})
}

func (e etcdStream) recv() (int64, error) {
	r, err := e.st.Recv()
	if err != nil {
		return 0, err
	}
	if r.TTL <= 0 {
		return r.ID, errNotFound
	}
	return r.ID, nil
}

func (s *etcdSystem) keepAliveMany(ctx context.Context, ids []int64, t *ackTracker) error {
	c := s.clients[0]
	for i, id := range ids {
		ch, err := c.KeepAlive(ctx, clientv3.LeaseID(id))
		if err != nil {
			return err
		}
		go func() {
			for range ch {
				t.ack(i, time.Now())
			}
			if ctx.Err() == nil {
				t.lose(i, time.Now())
			}
		}()
	}
	return nil
}

func (s *etcdSystem) close() {
	for _, c := range s.clients {
		c.Close()
	}
	s.probes.closeAll()
	s.conns.closeAll()
}
