package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/leasecluster/leasecluster/certs"
)

// benchTLS is the certificates of a -tls run, made with certs/ in the work
// directory. Both systems get the same arrangement: a peer CA that signs
// every node's certificate (served to clients and peers alike), a client CA
// that signs the load generator's certificate, client certificates
// required. A nil *benchTLS is a plaintext run.
type benchTLS struct {
	peerCA, clientCA string               // CA certificate files
	peers            map[string][2]string // node name: certificate and key files
	lc               *tls.Config          // leasecluster's clients: certs.DialTLS, as its CLI
	etcd             *tls.Config          // etcd's clientv3 and raw streams
}

// newBenchTLS writes the PKI into dir for the named nodes (leasecluster's
// lc1..lc3 and etcd's e1..e3, all on 127.0.0.1).
func newBenchTLS(dir string, nodes []string) (*benchTLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	const validFor = 7 * 24 * time.Hour
	peerCA, err := certs.NewCA("bench peer CA", validFor)
	if err != nil {
		return nil, err
	}
	clientCA, err := certs.NewCA("bench client CA", validFor)
	if err != nil {
		return nil, err
	}
	t := &benchTLS{peerCA: filepath.Join(dir, "peer-ca.crt"), clientCA: filepath.Join(dir, "client-ca.crt"), peers: map[string][2]string{}}
	if err := certs.WriteFileAtomic(t.peerCA, peerCA.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	if err := certs.WriteFileAtomic(t.clientCA, clientCA.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	notAfter := time.Now().Add(validFor)
	for _, name := range nodes {
		is, err := peerCA.Issue(name, []string{"127.0.0.1", "localhost", name}, time.Time{}, notAfter)
		if err != nil {
			return nil, err
		}
		cert, key, err := is.Write(dir, "peer-"+name)
		if err != nil {
			return nil, err
		}
		t.peers[name] = [2]string{cert, key}
	}
	is, err := clientCA.Issue("bench", nil, time.Time{}, notAfter)
	if err != nil {
		return nil, err
	}
	cert, key, err := is.Write(dir, "client-bench")
	if err != nil {
		return nil, err
	}
	pair, err := certs.LoadKeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	roots, err := certs.LoadPool(t.peerCA)
	if err != nil {
		return nil, err
	}
	t.lc = certs.DialTLS(pair, roots)
	kp, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(peerCA.Cert)
	t.etcd = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}, RootCAs: pool}
	return t, nil
}

// lcFlags are the TLS flags every leasecluster node shares.
func (t *benchTLS) lcFlags() []string {
	if t == nil {
		return nil
	}
	return []string{"--trusted-ca-file", t.clientCA, "--client-cert-auth", "--peer-trusted-ca-file", t.peerCA}
}

// lcMemberFlags are a leasecluster node's own certificate flags.
func (t *benchTLS) lcMemberFlags() func(name string) []string {
	if t == nil {
		return nil
	}
	return func(name string) []string {
		return []string{"--cert-file", t.peers[name][0], "--key-file", t.peers[name][1]}
	}
}

// etcdArgs are an etcd node's TLS flags (etcd's own names, in etcdnode).
func (t *benchTLS) etcdArgs(name string) []string {
	if t == nil {
		return nil
	}
	f := t.peers[name]
	return []string{"-cert-file", f[0], "-key-file", f[1], "-trusted-ca-file", t.clientCA, "-client-cert-auth",
		"-peer-cert-file", f[0], "-peer-key-file", f[1], "-peer-trusted-ca-file", t.peerCA, "-peer-client-cert-auth"}
}

// scheme is the URL scheme of the nodes' HTTP and etcd's URLs.
func (t *benchTLS) scheme() string {
	if t == nil {
		return "http"
	}
	return "https"
}

// lcConfig is leasecluster's client configuration; nil in plaintext.
func (t *benchTLS) lcConfig() *tls.Config {
	if t == nil {
		return nil
	}
	return t.lc
}

// etcdConfig is etcd's client configuration; nil in plaintext.
func (t *benchTLS) etcdConfig() *tls.Config {
	if t == nil {
		return nil
	}
	return t.etcd
}

// creds are the transport credentials of a raw gRPC connection.
func creds(cfg *tls.Config) credentials.TransportCredentials {
	if cfg == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(cfg)
}

// httpTransport is an HTTP transport that dials with cfg (nil: plaintext).
func httpTransport(cfg *tls.Config, idlePerHost int) *http.Transport {
	return &http.Transport{MaxIdleConnsPerHost: idlePerHost, TLSClientConfig: cfg}
}

// tlsNote is the method note of a -tls run.
func tlsNote() string {
	return fmt.Sprint("TLS (-tls): both systems serve mutual TLS on every client and peer connection, certificates made for the run with certs/ (ECDSA P-256): ",
		"a peer CA signs each node's certificate (SANs 127.0.0.1, localhost), a client CA the load generator's, client certificates required. ",
		"leasecluster: --cert-file/--key-file, --trusted-ca-file (client CA), --client-cert-auth, --peer-trusted-ca-file (peer CA); https on HTTP; its clients dial with certs.DialTLS (client.WithTLS). ",
		"etcd: --cert-file/--key-file, --trusted-ca-file, --client-cert-auth, --peer-cert-file/--peer-key-file, --peer-trusted-ca-file, --peer-client-cert-auth, https client and peer URLs; clientv3 and the raw streams with a crypto/tls configuration of the same certificate and roots.")
}
