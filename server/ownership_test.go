package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// tlsClient is a client library instance presenting cn's client
// certificate to every node of c.
func (p *testPKI) tlsClient(t *testing.T, c *testCluster, cn string) *client.Client {
	t.Helper()
	var eps []string
	for _, n := range c.running() {
		eps = append(eps, n.Addr())
	}
	cl, err := client.New(context.Background(), eps, client.WithTLS(p.clientTLS(cn)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// clientTLS is the TLS configuration of a client with cn's certificate.
func (p *testPKI) clientTLS(cn string) *tls.Config {
	cf, kf := p.issue(p.clientCA, cn, time.Time{}, time.Time{})
	pair, err := certs.LoadKeyPair(cf, kf)
	if err != nil {
		p.t.Fatal(err)
	}
	roots, err := certs.LoadPool(p.peerCAFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return certs.DialTLS(pair, roots)
}

// TestOwnership: a lease belongs to the identity that granted it; another
// identity cannot revoke, renew, attach to it or detach its items, through
// the leader, through a follower's forwarded KeepAlive stream, or through a
// follower's HTTP gateway; reads stay open and show the owner; an admin may
// act on every lease; refused requests change nothing.
func TestOwnership(t *testing.T) {
	p := newTestPKI(t)
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Security = p.security(cfg.Name)
		cfg.HTTPAddr = "127.0.0.1:0"
	})
	_, ld := c.leader()
	var follower *Node
	for _, n := range c.running() {
		if n != ld {
			follower = n
		}
	}
	ctx := ctxT(t)
	app1, app2, admin := p.tlsClient(t, c, "app1"), p.tlsClient(t, c, "app2"), p.tlsClient(t, c, "admin")
	l, err := app1.Grant(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app1.Attach(ctx, l.ID, "svc/a", "v"); err != nil {
		t.Fatal(err)
	}
	ttl, err := leasepb.NewLeasesClient(p.dialTLS(ld.Addr(), p.clientCA, "app2", time.Time{}, time.Time{})).
		TimeToLive(ctx, &leasepb.TimeToLiveRequest{Id: l.ID})
	if err != nil || ttl.GetOwner() != "app1" {
		t.Fatalf("another identity reads the lease: owner %q, %v; want app1", ttl.GetOwner(), err)
	}
	hash := c.converge()

	denied := map[string]error{}
	denied["revoke"] = app2.Revoke(ctx, l.ID)
	_, denied["attach"] = app2.Attach(ctx, l.ID, "svc/b", "")
	denied["detach"] = app2.Detach(ctx, l.ID, "svc/a")
	_, denied["renew"] = app2.RenewOnce(ctx, l.ID)
	_, denied["keepalive"] = app2.KeepAlive(ctx, l.ID)
	for op, err := range denied {
		if !errors.Is(err, client.ErrPermissionDenied) {
			t.Errorf("%s by another identity: %v, want ErrPermissionDenied", op, err)
		}
	}

	// A KeepAlive stream opened on a follower is forwarded to the leader,
	// which renews for the identity the follower names: the stream's own.
	renewVia := func(cn string) string {
		st, err := leasepb.NewLeasesClient(p.dialTLS(follower.Addr(), p.clientCA, cn, time.Time{}, time.Time{})).KeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.CloseSend()
		if err := st.Send(&leasepb.KeepAliveRequest{Id: l.ID}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s/%d", resp.GetError(), min(resp.GetTtlMs(), 1))
	}
	if got := renewVia("app2"); got != "PERMISSION_DENIED/0" {
		t.Errorf("another identity's renewal through a follower: %s", got)
	}
	if got := renewVia("app1"); got != "/1" {
		t.Errorf("the owner's renewal through a follower: %s", got)
	}

	// The follower's HTTP gateway passes the HTTPS caller's identity on.
	httpc := func(cn string) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(cn)}}
	}
	call := func(cn, method, path string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, method, "https://"+follower.HTTPAddr()+path, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := httpc(cn).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	id := fmt.Sprint(l.ID)
	for _, tc := range []struct{ method, path string }{{"DELETE", "/v1/leases/" + id}, {"POST", "/v1/leases/" + id + "/keepalive"},
		{"DELETE", "/v1/items/svc/a?lease_id=" + id}} {
		if code, body := call("app2", tc.method, tc.path); code != http.StatusForbidden || !strings.Contains(body, "PERMISSION_DENIED") {
			t.Errorf("HTTP %s %s by another identity: %d %s, want 403 PERMISSION_DENIED", tc.method, tc.path, code, body)
		}
	}
	if code, body := call("app1", "POST", "/v1/leases/"+id+"/keepalive"); code != http.StatusOK {
		t.Errorf("HTTP keepalive by the owner: %d %s", code, body)
	}
	if got := c.converge(); got != hash {
		t.Fatalf("refused requests changed the state: %s, was %s", got, hash)
	}

	if err := admin.Revoke(ctx, l.ID); err != nil {
		t.Fatalf("an admin revokes another identity's lease: %v", err)
	}
	if _, err := app1.TimeToLive(ctx, l.ID, false); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("after the admin's revoke: %v", err)
	}
}
