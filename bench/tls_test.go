package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"slices"
	"testing"
)

// TestBenchTLS: every node's certificate is served to both systems'
// clients, which present the client CA's certificate; the flags name the
// files; a nil *benchTLS is plaintext.
func TestBenchTLS(t *testing.T) {
	var none *benchTLS
	if none.scheme() != "http" || none.lcFlags() != nil || none.etcdArgs("e1") != nil || none.lcConfig() != nil || none.lcMemberFlags() != nil {
		t.Fatal("a nil *benchTLS is not plaintext")
	}
	b, err := newBenchTLS(t.TempDir(), []string{"lc1", "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if b.scheme() != "https" || !slices.Contains(b.lcFlags(), "--client-cert-auth") {
		t.Errorf("scheme %s, flags %v", b.scheme(), b.lcFlags())
	}
	args := b.etcdArgs("e1")
	for _, f := range []string{"-client-cert-auth", "-peer-client-cert-auth", "-trusted-ca-file", "-peer-trusted-ca-file"} {
		if !slices.Contains(args, f) {
			t.Errorf("etcd args %v lack %s", args, f)
		}
	}
	clientCAs := x509.NewCertPool()
	pem, err := os.ReadFile(b.clientCA)
	if err != nil || !clientCAs.AppendCertsFromPEM(pem) {
		t.Fatalf("client CA: %v", err)
	}
	for _, tc := range []struct {
		node string
		cfg  *tls.Config
	}{{"lc1", b.lc}, {"e1", b.etcd}} {
		pair, err := tls.LoadX509KeyPair(b.peers[tc.node][0], b.peers[tc.node][1])
		if err != nil {
			t.Fatal(err)
		}
		srvCfg := &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: clientCAs, ClientAuth: tls.RequireAndVerifyClientCert}
		a, c := net.Pipe()
		errc := make(chan error, 1)
		go func() { errc <- tls.Server(a, srvCfg).Handshake(); a.Close() }()
		cli := tc.cfg.Clone()
		cli.ServerName = "localhost"
		cerr := tls.Client(c, cli).Handshake()
		c.Close()
		if serr := <-errc; serr != nil || cerr != nil {
			t.Errorf("%s: server %v, client %v", tc.node, serr, cerr)
		}
	}
}
