package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type testPKI struct {
	dir                      string
	peerCA, clientCA         *CA
	peerCAFile, clientCAFile string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	var err error
	if p.peerCA, err = NewCA("peer-ca", time.Hour); err != nil {
		t.Fatal(err)
	}
	if p.clientCA, err = NewCA("client-ca", time.Hour); err != nil {
		t.Fatal(err)
	}
	p.peerCAFile = filepath.Join(p.dir, "peer-ca.crt")
	p.clientCAFile = filepath.Join(p.dir, "client-ca.crt")
	if err := os.WriteFile(p.peerCAFile, p.peerCA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.clientCAFile, p.clientCA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPKI) issue(t *testing.T, ca *CA, cn string) *KeyPair {
	t.Helper()
	is, err := ca.Issue(cn, []string{"127.0.0.1", "localhost"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := is.Write(p.dir, cn)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	kp, err := LoadKeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func (p *testPKI) node(t *testing.T, requireClient bool) *Node {
	t.Helper()
	peers, err := LoadPool(p.peerCAFile)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := LoadPool(p.clientCAFile)
	if err != nil {
		t.Fatal(err)
	}
	return &Node{Pair: p.issue(t, p.peerCA, "n1"), PeerCAs: peers, ClientCAs: clients, RequireClientCert: requireClient}
}

// handshake runs a real TLS handshake over loopback TCP and returns the
// server's and the client's errors.
func handshake(t *testing.T, server, client *tls.Config) (srvErr, cliErr error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("x")) // let the client see a refusal of its certificate
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", lis.Addr().String(), client)
	if err == nil {
		_, err = io.ReadFull(c, make([]byte, 1))
		c.Close()
	}
	return <-done, err
}

// TestClassify: the peer CA makes peers, the client CA clients, anything
// else is refused; an allowed CN narrows the peers.
func TestClassify(t *testing.T) {
	p := newPKI(t)
	n := p.node(t, true)
	peer := p.issue(t, p.peerCA, "n2").Certificate().Leaf
	client := p.issue(t, p.clientCA, "app1").Certificate().Leaf
	other, _ := NewCA("other", time.Hour)
	stranger := p.issue(t, other, "mallory").Certificate().Leaf
	if r, cn, err := n.Classify(chain(peer)); r != RolePeer || cn != "n2" || err != nil {
		t.Errorf("peer: %v %q %v", r, cn, err)
	}
	if r, cn, err := n.Classify(chain(client)); r != RoleClient || cn != "app1" || err != nil {
		t.Errorf("client: %v %q %v", r, cn, err)
	}
	if _, _, err := n.Classify(chain(stranger)); !errors.Is(err, ErrUntrusted) {
		t.Errorf("stranger: %v", err)
	}
	n.PeerCN = "n9"
	if r, _, err := n.Classify(chain(peer)); r == RolePeer || err == nil {
		t.Errorf("peer with a CN other than the allowed one: %v %v", r, err)
	}
}

// TestHandshakes: a node accepts its peers and clients over real TLS,
// refuses a stranger's certificate and, when client certificates are
// required, a connection without one; TLS below 1.2 is refused.
func TestHandshakes(t *testing.T) {
	p := newPKI(t)
	n := p.node(t, true)
	peerPool, _ := LoadPool(p.peerCAFile)
	dial := func(pair *KeyPair) *tls.Config { return DialTLS(pair, peerPool) }
	if s, c := handshake(t, n.ServerTLS(), dial(p.issue(t, p.peerCA, "n2"))); s != nil || c != nil {
		t.Fatalf("peer: server %v, client %v", s, c)
	}
	if s, c := handshake(t, n.ServerTLS(), dial(p.issue(t, p.clientCA, "app1"))); s != nil || c != nil {
		t.Fatalf("client: server %v, client %v", s, c)
	}
	other, _ := NewCA("other", time.Hour)
	if s, _ := handshake(t, n.ServerTLS(), dial(p.issue(t, other, "mallory"))); s == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	if s, _ := handshake(t, n.ServerTLS(), dial(nil)); s == nil {
		t.Fatal("no certificate was accepted although one is required")
	}
	old := dial(p.issue(t, p.clientCA, "app1"))
	old.MaxVersion = tls.VersionTLS11
	if s, _ := handshake(t, n.ServerTLS(), old); s == nil {
		t.Fatal("TLS 1.1 was accepted")
	}
	// The client side verifies the server: a node whose certificate another
	// CA signed is refused by its dialers.
	fake := p.node(t, false)
	fake.Pair = p.issue(t, other, "n1")
	if _, c := handshake(t, fake.ServerTLS(), dial(p.issue(t, p.clientCA, "app1"))); c == nil {
		t.Fatal("a server certificate from another CA was accepted")
	}
}

// TestRotation: rewriting the certificate and key files changes what the
// next handshake presents, without reloading anything by hand.
func TestRotation(t *testing.T) {
	p := newPKI(t)
	kp := p.issue(t, p.peerCA, "rot")
	first := kp.Certificate().Leaf.SerialNumber
	is, err := p.peerCA.Issue("rot", nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Files rewritten within one mtime tick may keep their stamp; the size
	// of a new ECDSA signature may match too, so wait for a distinct mtime.
	before, _ := os.Stat(filepath.Join(p.dir, "rot.crt"))
	for {
		if _, _, err := is.Write(p.dir, "rot"); err != nil {
			t.Fatal(err)
		}
		after, _ := os.Stat(filepath.Join(p.dir, "rot.crt"))
		if !after.ModTime().Equal(before.ModTime()) {
			break
		}
		time.Sleep(10 * time.Millisecond) // a coarse file-system clock, not synchronisation
	}
	if got := kp.Certificate().Leaf.SerialNumber; got.Cmp(first) == 0 {
		t.Fatal("the rotated certificate was not picked up")
	}
	// A half-written rotation keeps the last good pair.
	if err := os.WriteFile(filepath.Join(p.dir, "rot.crt"), []byte("-----BEGIN"), 0o644); err != nil {
		t.Fatal(err)
	}
	if kp.Certificate() == nil {
		t.Fatal("a broken file replaced the last good pair")
	}
}

func chain(c ...*x509.Certificate) []*x509.Certificate { return c }

// TestDialChecksIPAddress: a server certificate from the trusted CA that is
// not valid for the dialled IP address is refused.
func TestDialChecksIPAddress(t *testing.T) {
	p := newPKI(t)
	n := p.node(t, false)
	is, err := p.peerCA.Issue("elsewhere", []string{"10.9.9.9", "example.org"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := is.Write(p.dir, "elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	if n.Pair, err = LoadKeyPair(cf, kf); err != nil {
		t.Fatal(err)
	}
	roots, _ := LoadPool(p.peerCAFile)
	if _, c := handshake(t, n.ServerTLS(), DialTLS(nil, roots)); c == nil {
		t.Fatal("a certificate for 10.9.9.9 was accepted at 127.0.0.1")
	}
}
