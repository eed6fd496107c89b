package client_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// tlsPKI is a peer CA, a client CA and a CA nobody trusts, in a directory.
type tlsPKI struct {
	dir                   string
	peerCA, clientCA, bad *certs.CA
}

func newTLSPKI(t *testing.T) *tlsPKI {
	t.Helper()
	p := &tlsPKI{dir: t.TempDir()}
	for _, x := range []struct {
		ca   **certs.CA
		name string
	}{{&p.peerCA, "peer-ca"}, {&p.clientCA, "client-ca"}, {&p.bad, "other-ca"}} {
		ca, err := certs.NewCA(x.name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.dir, x.name+".crt"), ca.CertPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		*x.ca = ca
	}
	return p
}

func (p *tlsPKI) pair(t *testing.T, ca *certs.CA, cn string, hosts ...string) *certs.KeyPair {
	t.Helper()
	is, err := ca.Issue(cn, hosts, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := is.Write(p.dir, cn)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := certs.LoadKeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func (p *tlsPKI) pool(t *testing.T, name string) *certs.Pool {
	t.Helper()
	pool, err := certs.LoadPool(filepath.Join(p.dir, name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// tlsNode is a gRPC server with a node's TLS configuration (client
// certificates required) that answers Status with the caller's CN as Leader
// and Grant either itself or with a LeaderHint to redirect.
type tlsNode struct {
	leasepb.UnimplementedLeasesServer
	leasepb.UnimplementedClusterServer
	name, addr, redirect string
}

func (n *tlsNode) Status(ctx context.Context, _ *leasepb.StatusRequest) (*leasepb.StatusResponse, error) {
	cn := ""
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			cn = ti.State.PeerCertificates[0].Subject.CommonName
		}
	}
	return &leasepb.StatusResponse{Name: n.name, Role: "leader", Leader: cn}, nil
}

func (n *tlsNode) Grant(_ context.Context, req *leasepb.GrantRequest) (*leasepb.GrantResponse, error) {
	if n.redirect != "" {
		st, err := status.New(codes.Unavailable, "not the leader").WithDetails(&leasepb.LeaderHint{Id: "n2", Address: n.redirect})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	return &leasepb.GrantResponse{Id: 7, TtlMs: req.GetTtlMs()}, nil
}

func startTLSNode(t *testing.T, p *tlsPKI, name, redirect string) *tlsNode {
	t.Helper()
	node := &certs.Node{
		Pair:              p.pair(t, p.peerCA, name, "127.0.0.1", "localhost"),
		PeerCAs:           p.pool(t, "peer-ca"),
		ClientCAs:         p.pool(t, "client-ca"),
		RequireClientCert: true,
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &tlsNode{name: name, addr: lis.Addr().String(), redirect: redirect}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(node.ServerTLS())))
	leasepb.RegisterLeasesServer(srv, n)
	leasepb.RegisterClusterServer(srv, n)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return n
}

// TestWithTLS dials real gRPC servers over TLS on loopback: the right CA and
// a client certificate succeed (the server sees the client's CN, and a
// leader hint is followed over TLS too); the wrong CA, no client
// certificate, and plaintext all fail.
func TestWithTLS(t *testing.T) {
	p := newTLSPKI(t)
	n2 := startTLSNode(t, p, "n2", "")
	n1 := startTLSNode(t, p, "n1", n2.addr)
	app := p.pair(t, p.clientCA, "app1")

	good := newClient(t, []string{n1.addr}, client.WithTLS(certs.DialTLS(app, p.pool(t, "peer-ca"))))
	st, err := good.Status(testContext(t))
	if err != nil {
		t.Fatalf("Status over TLS: %v", err)
	}
	if st.GetName() != "n1" || st.GetLeader() != "app1" {
		t.Fatalf("Status: name %q, client CN seen %q; want n1, app1", st.GetName(), st.GetLeader())
	}
	// n1 redirects Grant to n2: the connection to the hinted leader is TLS too.
	l, err := good.Grant(testContext(t), 5*time.Second)
	if err != nil || l.ID != 7 {
		t.Fatalf("Grant through a leader hint over TLS: %+v, %v", l, err)
	}
	if good.Leader() != n2.addr {
		t.Fatalf("leader %q, want the hinted %q", good.Leader(), n2.addr)
	}

	fails := []struct {
		name string
		opts []client.Option
		want string // in the error
	}{
		{"wrong CA", []client.Option{client.WithTLS(certs.DialTLS(app, p.pool(t, "other-ca")))}, "certificate signed by unknown authority"},
		{"no client certificate", []client.Option{client.WithTLS(certs.DialTLS(nil, p.pool(t, "peer-ca")))}, ""},
		{"client certificate of another CA", []client.Option{client.WithTLS(certs.DialTLS(p.pair(t, p.bad, "mallory"), p.pool(t, "peer-ca")))}, ""},
		{"plaintext", nil, ""},
	}
	for _, f := range fails {
		t.Run(f.name, func(t *testing.T) {
			c := newClient(t, []string{n1.addr}, append(f.opts, client.WithMaxAttempts(2))...)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			st, err := c.Status(ctx)
			if err == nil {
				t.Fatalf("Status succeeded: %v", st)
			}
			if !errors.Is(err, client.ErrNoLeader) || !strings.Contains(err.Error(), f.want) {
				t.Fatalf("error %v; want ErrNoLeader containing %q", err, f.want)
			}
		})
	}
}
