package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// scrape is one parse of a Prometheus text page: each sample's value by its
// name with labels, as written ("name{a=\"1\",b=\"2\"}").
type scrape map[string]float64

func getScrape(t *testing.T, url string) scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	s := scrape{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		s[line[:i]] = v
	}
	return s
}

// find returns the value of the sample of name whose labels include every
// one of labels (`k="v"`), and whether there is one.
func (s scrape) find(name string, labels ...string) (float64, bool) {
	for k, v := range s {
		base, lbls, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(lbls, l) {
				ok = false
			}
		}
		if ok {
			return v, true
		}
	}
	return 0, false
}

func (s scrape) need(t *testing.T, name string, check func(float64) bool, labels ...string) float64 {
	t.Helper()
	v, ok := s.find(name, labels...)
	if !ok {
		t.Errorf("no sample %s%v", name, labels)
		return 0
	}
	if !check(v) {
		t.Errorf("%s%v = %v: implausible", name, labels, v)
	}
	return v
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func equals(n float64) func(float64) bool  { return func(v float64) bool { return v == n } }
func finite(v float64) bool                { return !math.IsInf(v, 0) && !math.IsNaN(v) && v >= 0 }

// TestMetricsSeries: after grants, an attach, renewals (one of an unknown
// lease), a client revoke and an expiry, the leader's plain metrics listener
// shows every series with a plausible value: the counters counted, the lease
// gauge equals the lessor's count, the histograms have samples; gRPC metrics
// by method and code; raft's own figures through the go-metrics sink; the
// last contact with each follower and the snapshot age.
func TestMetricsSeries(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MetricsAddr = "127.0.0.1:0" })
	_, ld := c.leader()
	ctx := ctxT(t)
	cc := dial(t, ld.Addr())
	leases, items := leasepb.NewLeasesClient(cc), leasepb.NewItemsClient(cc)
	var ids []int64
	for range 3 {
		g, err := leases.Grant(ctx, &leasepb.GrantRequest{TtlMs: 60_000})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, g.Id)
	}
	short, err := leases.Grant(ctx, &leasepb.GrantRequest{TtlMs: 1}) // raised to MinTTL; left to expire
	if err != nil {
		t.Fatal(err)
	}
	if _, err := items.Attach(ctx, &leasepb.AttachRequest{LeaseId: ids[0], Key: "k", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	stream, err := leases.KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{ids[0], ids[1], 424242} {
		if err := stream.Send(&leasepb.KeepAliveRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	stream.CloseSend()
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
	if _, err := leases.Revoke(ctx, &leasepb.RevokeRequest{Id: ids[2]}); err != nil {
		t.Fatal(err)
	}
	if _, err := leases.Revoke(ctx, &leasepb.RevokeRequest{Id: 424242}); status.Code(err) != codes.NotFound {
		t.Fatalf("revoke of an unknown lease: %v", err)
	}
	// The lease leaves the lessor when its revoke is applied, a moment
	// before the expiry loop counts it: wait for the count.
	err = eventually(10*time.Second, func() error {
		if ld.lessor.Lookup(lessor.LeaseID(short.Id)) != nil {
			return errors.New("the short lease has not expired")
		}
		if v, _ := getScrape(t, "http://"+ld.MetricsAddr()+"/metrics").find("leasecluster_expiry_lag_seconds_count"); v < 1 {
			return errors.New("the expiry is not counted yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ld.rs.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}

	s := getScrape(t, "http://"+ld.MetricsAddr()+"/metrics")
	s.need(t, "leasecluster_is_leader", equals(1))
	s.need(t, "leasecluster_grants_total", atLeast(4))
	s.need(t, "leasecluster_client_revokes_total", equals(1))
	s.need(t, "leasecluster_expired_revokes_total", atLeast(1))
	s.need(t, "leasecluster_renewals_total", atLeast(2), `outcome="ok"`)
	s.need(t, "leasecluster_renewals_total", equals(1), `outcome="not_found"`)
	s.need(t, "leasecluster_renewals_total", equals(0), `outcome="unconfirmed"`)
	s.need(t, "leasecluster_leases", equals(float64(ld.lessor.Len())))
	s.need(t, "leasecluster_leases", equals(2))
	s.need(t, "leasecluster_items", equals(1))
	s.need(t, "leasecluster_renewal_duration_seconds_count", equals(3))
	s.need(t, "leasecluster_renewal_duration_seconds_sum", func(v float64) bool { return v > 0 && v < 3 })
	s.need(t, "leasecluster_renewal_duration_seconds_bucket", equals(3), `le="+Inf"`)
	s.need(t, "leasecluster_expiry_lag_seconds_count", atLeast(1))
	s.need(t, "leasecluster_expiry_lag_seconds_sum", func(v float64) bool { return v > 0 && v < 5 })
	s.need(t, "leasecluster_applied_index", atLeast(1))

	// gRPC by method and code.
	s.need(t, "grpc_server_handled_total", atLeast(4), `grpc_method="Grant"`, `grpc_service="leasecluster.v1.Leases"`, `grpc_code="OK"`)
	s.need(t, "grpc_server_handled_total", equals(1), `grpc_method="Revoke"`, `grpc_code="NotFound"`)
	s.need(t, "grpc_server_handled_total", equals(1), `grpc_method="KeepAlive"`, `grpc_type="bidi_stream"`, `grpc_code="OK"`)
	s.need(t, "grpc_server_started_total", atLeast(1), `grpc_method="Attach"`, `grpc_service="leasecluster.v1.Items"`)
	s.need(t, "grpc_server_handling_seconds_count", atLeast(4), `grpc_method="Grant"`)

	// Raft's figures through go-metrics, and the per-node raft gauges.
	s.need(t, "leasecluster_raft_commitTime_count", atLeast(1))
	s.need(t, "leasecluster_raft_leader_dispatchLog_count", atLeast(1))
	s.need(t, "leasecluster_raft_rpc_appendEntries_storeLogs_count", atLeast(1)) // the followers', in this process
	s.need(t, "leasecluster_raft_replication_appendEntries_rpc_count", atLeast(1), `peer_id="n`)
	for k := range s {
		if strings.HasPrefix(k, "leasecluster_raft_replication_appendEntries_rpc_n") {
			t.Errorf("raft's legacy per-peer name %s is not filtered out", k)
		}
	}
	for _, n := range c.running() {
		if n != ld {
			s.need(t, "leasecluster_raft_follower_last_contact_seconds", func(v float64) bool { return finite(v) && v < 5 }, `follower="`+n.Name()+`"`)
		}
	}
	s.need(t, "leasecluster_raft_snapshot_age_seconds", func(v float64) bool { return finite(v) && v < 60 })
	s.need(t, "leasecluster_raft_snapshot_index", atLeast(1))

	// A follower: not leading, no contacts of its own, the same leases.
	for _, n := range c.running() {
		if n == ld {
			continue
		}
		err := eventually(5*time.Second, func() error {
			if n.lessor.Len() != 2 {
				return errors.New("not applied yet")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		fs := getScrape(t, "http://"+n.MetricsAddr()+"/metrics")
		fs.need(t, "leasecluster_is_leader", equals(0))
		fs.need(t, "leasecluster_leases", equals(2))
		if _, ok := fs.find("leasecluster_raft_follower_last_contact_seconds"); ok {
			t.Errorf("%s, a follower, reports contacts with followers", n.Name())
		}
		break
	}
}

// TestMetricsListenerWithoutCertificates: with mutual TLS and
// --client-cert-auth, the plain metrics listener serves /healthz, /readyz
// and /metrics without a certificate, and nothing else, while the HTTP API's
// listener refuses a handshake without a client certificate.
func TestMetricsListenerWithoutCertificates(t *testing.T) {
	p := newTestPKI(t)
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Security = p.security(cfg.Name)
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.MetricsAddr = "127.0.0.1:0"
	})
	_, n := c.leader()
	hc := httpClient(t)
	base := "http://" + n.MetricsAddr()
	if r := httpDo(t, hc, "GET", base+"/healthz", "", nil); r.code != 200 || r.raw != "ok\n" {
		t.Fatalf("/healthz: %d %q", r.code, r.raw)
	}
	err := eventually(10*time.Second, func() error {
		if r := httpDo(t, hc, "GET", base+"/readyz", "", nil); r.code != 200 {
			return errors.New(r.raw)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	if r := httpDo(t, hc, "GET", base+"/metrics", "", nil); r.code != 200 || !strings.Contains(r.raw, "leasecluster_is_leader 1") {
		t.Fatalf("/metrics: %d %.300s", r.code, r.raw)
	}
	if r := httpDo(t, hc, "HEAD", base+"/healthz", "", nil); r.code != 200 {
		t.Fatalf("HEAD /healthz: %d", r.code)
	}
	if r := httpDo(t, hc, "POST", base+"/metrics", "", nil); r.code != 405 {
		t.Fatalf("POST /metrics: %d, want 405", r.code)
	}
	for _, path := range []string{"/v1/status", "/v1/leases", "/debug/pprof/", "/"} {
		if r := httpDo(t, hc, "GET", base+path, "", nil); r.code != 404 {
			t.Fatalf("GET %s on the metrics listener: %d, want 404", path, r.code)
		}
	}

	// The API's listener: a handshake without a client certificate fails;
	// with one, the same probe answers.
	roots, err := certs.LoadPool(p.peerCAFile)
	if err != nil {
		t.Fatal(err)
	}
	api := "https://" + n.HTTPAddr() + "/healthz"
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots.CertPool()}}}
	t.Cleanup(anon.CloseIdleConnections)
	if resp, err := anon.Get(api); err == nil {
		resp.Body.Close()
		t.Fatalf("API listener without a client certificate: %d, want a failed handshake", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + n.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("API listener answered plain HTTP")
		}
	}
	cf, kf := p.issue(p.clientCA, "prober", time.Time{}, time.Time{})
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots.CertPool(), Certificates: []tls.Certificate{pair}}}}
	t.Cleanup(withCert.CloseIdleConnections)
	resp, err := withCert.Get(api)
	if err != nil {
		t.Fatalf("API listener with a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API listener with a client certificate: %d", resp.StatusCode)
	}
}

// TestMetricsHotPathNoAllocs: counting a batch of acknowledged renewals,
// unconfirmed ones and expiry revokes allocates nothing.
func TestMetricsHotPathNoAllocs(t *testing.T) {
	m := newMetrics(&Node{lessor: &lessor.FakeLessor{}})
	results := make([]RenewResult, 256)
	for i := range results {
		results[i].ID = lessor.LeaseID(i + 1)
	}
	start := time.Now()
	revoked := make([]*lessor.Lease, 10) // leases of no lessor: Overdue 0
	for i := range revoked {
		revoked[i] = &lessor.Lease{ID: lessor.LeaseID(i + 1)}
	}
	if a := testing.AllocsPerRun(100, func() {
		m.renewalsAcked(results, start)
		m.renewalsUnconfirmed(3)
		m.expiredRevokes(revoked)
		m.grants.Inc()
		m.clientRevokes.Inc()
	}); a != 0 {
		t.Fatalf("%v allocations per batch", a)
	}
}
