package server

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/transport"
)

// testPKI is a peer CA and a client CA with files in a temp dir.
type testPKI struct {
	t                        testing.TB
	dir                      string
	peerCA, clientCA         *certs.CA
	peerCAFile, clientCAFile string
	files                    int
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{t: t, dir: t.TempDir()}
	var err error
	if p.peerCA, err = certs.NewCA("peer-ca", time.Hour); err != nil {
		t.Fatal(err)
	}
	if p.clientCA, err = certs.NewCA("client-ca", time.Hour); err != nil {
		t.Fatal(err)
	}
	p.peerCAFile, p.clientCAFile = p.writeCA("peer-ca", p.peerCA), p.writeCA("client-ca", p.clientCA)
	return p
}

func (p *testPKI) writeCA(name string, ca *certs.CA) string {
	f := filepath.Join(p.dir, name+".crt")
	if err := os.WriteFile(f, ca.CertPEM(), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return f
}

// issue writes a certificate for cn signed by ca, valid from notBefore to
// notAfter (zero: now for a year), and returns its files.
func (p *testPKI) issue(ca *certs.CA, cn string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	is, err := ca.Issue(cn, []string{"127.0.0.1", "localhost"}, notBefore, notAfter)
	if err != nil {
		p.t.Fatal(err)
	}
	p.files++ // a file of its own: nodes re-read theirs when they change
	certFile, keyFile, err = is.Write(p.dir, fmt.Sprintf("%s-%d", cn, p.files))
	if err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile
}

// security is a node's mutual-TLS configuration with separate CAs.
func (p *testPKI) security(name string) Security {
	cf, kf := p.issue(p.peerCA, name, time.Time{}, time.Time{})
	return Security{CertFile: cf, KeyFile: kf, TrustedCAFile: p.clientCAFile, ClientCertAuth: true,
		PeerTrustedCAFile: p.peerCAFile, AdminCNs: []string{"admin"}}
}

// dialTLS connects to addr presenting the certificate of cn signed by ca
// (none if ca is nil), trusting the peer CA for the server.
func (p *testPKI) dialTLS(addr string, ca *certs.CA, cn string, notBefore, notAfter time.Time) *grpc.ClientConn {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(p.tlsConfig(ca, cn, notBefore, notAfter))))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { cc.Close() })
	return cc
}

// tlsConfig is a client's TLS configuration with a certificate (none if ca
// is nil) issued by ca to cn, trusting the peer CA.
func (p *testPKI) tlsConfig(ca *certs.CA, cn string, notBefore, notAfter time.Time) *tls.Config {
	roots, err := certs.LoadPool(p.peerCAFile)
	if err != nil {
		p.t.Fatal(err)
	}
	var pair *certs.KeyPair
	if ca != nil {
		cf, kf := p.issue(ca, cn, notBefore, notAfter)
		if pair, err = certs.LoadKeyPair(cf, kf); err != nil {
			p.t.Fatal(err)
		}
	}
	return certs.DialTLS(pair, roots)
}

func newTLSCluster(t *testing.T) (*testCluster, *testPKI) {
	p := newTestPKI(t)
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Security = p.security(cfg.Name) })
	return c, p
}

// TestTLSClusterServesAndRefuses: a mutual-TLS cluster elects and serves a
// client with a client certificate; no certificate, an expired one, one from
// another CA and plaintext are refused; a client certificate cannot send
// Raft traffic (a forged vote with term 2^64-1 or a TimeoutNow); and none of
// it changes the cluster's leader, term or state.
func TestTLSClusterServesAndRefuses(t *testing.T) {
	c, p := newTLSCluster(t)
	li, ld := c.leader()
	ctx := ctxT(t)
	app := leasepb.NewLeasesClient(p.dialTLS(ld.Addr(), p.clientCA, "app1", time.Time{}, time.Time{}))
	g, err := app.Grant(ctx, &leasepb.GrantRequest{TtlMs: 10_000})
	if err != nil {
		t.Fatalf("grant with a client certificate: %v", err)
	}
	term, hash := ld.rs.raft.CurrentTerm(), c.converge()

	other, err := certs.NewCA("other-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	refused := map[string]*grpc.ClientConn{
		"no certificate":       p.dialTLS(ld.Addr(), nil, "", time.Time{}, time.Time{}),
		"expired certificate":  p.dialTLS(ld.Addr(), p.clientCA, "late", past, past.Add(time.Hour)),
		"another CA's":         p.dialTLS(ld.Addr(), other, "mallory", time.Time{}, time.Time{}),
		"plaintext":            dial(t, ld.Addr()),
		"another CA's as peer": p.dialTLS(ld.Addr(), other, "n1", time.Time{}, time.Time{}),
	}
	for name, cc := range refused {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := leasepb.NewLeasesClient(cc).Revoke(rctx, &leasepb.RevokeRequest{Id: g.Id})
		cancel()
		if code := status.Code(err); code != codes.Unavailable && code != codes.Unauthenticated && code != codes.DeadlineExceeded {
			t.Errorf("%s: revoke answered %v, want the connection refused", name, err)
		}
	}

	// A valid client certificate on the Raft transport service.
	raftc := leasepb.NewRaftTransportClient(p.dialTLS(ld.Addr(), p.clientCA, "app2", time.Time{}, time.Time{}))
	_, err = raftc.RequestVote(ctx, &leasepb.RaftRequestVoteRequest{Header: &leasepb.RaftRPCHeader{Id: []byte("app2"), Addr: []byte("app2")}, Term: math.MaxUint64})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("RequestVote with a client certificate: %v, want PermissionDenied", err)
	}
	for i, n := range c.running() {
		if i == li {
			continue
		}
		_, err := leasepb.NewRaftTransportClient(p.dialTLS(n.Addr(), p.clientCA, "app3", time.Time{}, time.Time{})).
			TimeoutNow(ctx, &leasepb.RaftTimeoutNowRequest{Header: &leasepb.RaftRPCHeader{Id: []byte(n.Name())}})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("TimeoutNow to %s with a client certificate: %v, want PermissionDenied", n.Name(), err)
		}
	}
	// The followers serve the leader's pipeline stream; a client
	// certificate's is closed unanswered, before raft sees its forged entry.
	for i, n := range c.running() {
		if i == li {
			continue
		}
		if err := eventually(5*time.Second, func() error {
			if got := n.rs.trans.ServedStreams(); got != 1 {
				return fmt.Errorf("%s serves %d pipeline streams, want the leader's", n.Name(), got)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		cfg := p.tlsConfig(p.clientCA, "app4", time.Time{}, time.Time{})
		cfg.NextProtos = []string{transport.StreamALPN}
		if err := forgeStreamEntry(n.Addr(), cfg); err == nil {
			t.Fatalf("%s: a client certificate's pipeline stream was answered", n.Name())
		}
	}
	if li2, ld2 := c.leader(); li2 != li || ld2.rs.raft.CurrentTerm() != term {
		t.Fatalf("leader or term changed: %s term %d, was %s term %d", ld2.Name(), ld2.rs.raft.CurrentTerm(), ld.Name(), term)
	}
	if got := c.converge(); got != hash {
		t.Fatalf("state changed: %s, was %s", got, hash)
	}
	if _, err := app.TimeToLive(ctx, &leasepb.TimeToLiveRequest{Id: g.Id}); err != nil {
		t.Fatalf("the lease is gone: %v", err)
	}

	// The state hash, a pass over the whole state, is for admins and members.
	appCluster := leasepb.NewClusterClient(p.dialTLS(ld.Addr(), p.clientCA, "app1", time.Time{}, time.Time{}))
	if st, err := appCluster.Status(ctx, &leasepb.StatusRequest{}); err != nil || st.Leader == "" {
		t.Fatalf("status without the hash: %v %v", st, err)
	}
	if _, err := appCluster.Status(ctx, &leasepb.StatusRequest{StateHash: true}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("state hash for a client: %v, want PermissionDenied", err)
	}
	admin := leasepb.NewClusterClient(p.dialTLS(ld.Addr(), p.clientCA, "admin", time.Time{}, time.Time{}))
	if st, err := admin.Status(ctx, &leasepb.StatusRequest{StateHash: true}); err != nil || st.StateHash != hash {
		t.Fatalf("state hash for an admin: %v %v, want %s", st.GetStateHash(), err, hash)
	}
}

// TestTLSFailoverAndRotation: the TLS cluster fails over, and a node picks up
// a rewritten certificate for new connections without a restart.
func TestTLSFailoverAndRotation(t *testing.T) {
	c, p := newTLSCluster(t)
	li, ld := c.leader()
	ctx := ctxT(t)
	serial := func(addr string) string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only to read the served certificate
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	_, follower := c.leader()
	for _, n := range c.running() {
		if n != ld {
			follower = n
		}
	}
	before := serial(follower.Addr())
	cf, kf := follower.cfg.Security.CertFile, follower.cfg.Security.KeyFile
	is, err := p.peerCA.Issue(follower.Name(), []string{"127.0.0.1", "localhost"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := eventually(5*time.Second, func() error {
		if err := certs.WriteFileAtomic(kf, is.KeyPEM, 0o600); err != nil {
			return err
		}
		if err := certs.WriteFileAtomic(cf, is.CertPEM, 0o644); err != nil {
			return err
		}
		if serial(follower.Addr()) == before {
			return errors.New("still serving the old certificate")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	c.kill(li)
	_, ld2 := c.leader()
	if ld2 == ld {
		t.Fatal("no new leader")
	}
	app := leasepb.NewLeasesClient(p.dialTLS(ld2.Addr(), p.clientCA, "app1", time.Time{}, time.Time{}))
	if _, err := app.Grant(ctx, &leasepb.GrantRequest{TtlMs: 10_000}); err != nil {
		t.Fatalf("grant after failover: %v", err)
	}
}

// TestSecurityValidate: configurations that cannot work, or cannot tell
// peers from clients, are refused with the reason.
func TestSecurityValidate(t *testing.T) {
	p := newTestPKI(t)
	cf, kf := p.issue(p.peerCA, "n1", time.Time{}, time.Time{})
	copyOfPeerCA := filepath.Join(p.dir, "copy.crt")
	if err := os.WriteFile(copyOfPeerCA, p.peerCA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sec  Security
		want string // "" means valid
	}{
		{"plaintext", Security{}, ""},
		{"separate CAs", Security{CertFile: cf, KeyFile: kf, TrustedCAFile: p.clientCAFile, PeerTrustedCAFile: p.peerCAFile, ClientCertAuth: true}, ""},
		{"one CA, allowed CN", Security{CertFile: cf, KeyFile: kf, TrustedCAFile: p.peerCAFile, ClientCertAuth: true, PeerCertAllowedCN: "n1"}, ""},
		{"one CA, client auth off", Security{CertFile: cf, KeyFile: kf, TrustedCAFile: p.peerCAFile}, ""},
		{"one CA for both", Security{CertFile: cf, KeyFile: kf, TrustedCAFile: p.peerCAFile, ClientCertAuth: true}, "cannot tell peers from clients"},
		{"a copy of one CA", Security{CertFile: cf, KeyFile: kf, TrustedCAFile: copyOfPeerCA, PeerTrustedCAFile: p.peerCAFile, ClientCertAuth: true}, "cannot tell peers from clients"},
		{"cert without key", Security{CertFile: cf, TrustedCAFile: p.peerCAFile}, "go together"},
		{"CA without cert", Security{TrustedCAFile: p.peerCAFile}, "need --cert-file"},
		{"no CA", Security{CertFile: cf, KeyFile: kf}, "to verify peers"},
		{"client auth without client CA", Security{CertFile: cf, KeyFile: kf, PeerTrustedCAFile: p.peerCAFile, ClientCertAuth: true}, "needs --trusted-ca-file"},
	} {
		err := tc.sec.validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A node refuses to start with it, before it opens anything.
	cfg := Config{Name: "n1", DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0",
		Security: Security{CertFile: cf, KeyFile: kf, TrustedCAFile: p.peerCAFile, ClientCertAuth: true}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "cannot tell peers from clients") {
		t.Fatalf("New: %v", err)
	}
}

// forgeStreamEntry opens a pipeline stream to addr (TLS with cfg) and sends
// an AppendEntries of term 2^64-1 that would take the node's term. It
// returns nil if the node answered the preface.
func forgeStreamEntry(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	req, err := proto.Marshal(&leasepb.RaftAppendEntriesRequest{Header: &leasepb.RaftRPCHeader{Id: []byte("app4"), Addr: []byte("app4")}, Term: math.MaxUint64})
	if err != nil {
		return err
	}
	frame := binary.BigEndian.AppendUint32([]byte(transport.StreamPreface), uint32(len(req)))
	if _, err := conn.Write(append(frame, req...)); err != nil {
		return err
	}
	ack := make([]byte, len(transport.StreamPreface))
	_, err = io.ReadFull(conn, ack)
	return err
}
