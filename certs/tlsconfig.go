package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Role is what a verified certificate makes its holder.
type Role int

const (
	// RoleNone: no certificate was presented.
	RoleNone Role = iota
	// RoleClient: signed by the client CA.
	RoleClient
	// RolePeer: signed by the peer CA (and with the allowed CN, if one is
	// set): a member of the cluster, the only role that may send Raft traffic.
	RolePeer
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RolePeer:
		return "peer"
	}
	return "none"
}

// ErrUntrusted: a certificate that neither CA vouches for.
var ErrUntrusted = errors.New("certs: certificate not signed by a trusted CA")

// Node is a node's TLS material: its own key pair (served, and presented
// when it dials its peers), the CA of client certificates and the CA of peer
// certificates.
type Node struct {
	Pair      *KeyPair
	ClientCAs *Pool // nil: no client certificates are accepted
	PeerCAs   *Pool
	// PeerCN, if set, is the only subject CN a peer certificate may carry.
	PeerCN string
	// RequireClientCert refuses connections without a certificate.
	RequireClientCert bool
}

// Classify verifies a presented chain (leaf first) and says whose it is: a
// peer's if the peer CA signed it (with the allowed CN, if set), else a
// client's if the client CA did. The identity is the leaf's subject CN.
func (n *Node) Classify(chain []*x509.Certificate) (Role, string, error) {
	if len(chain) == 0 {
		return RoleNone, "", nil
	}
	leaf := chain[0]
	cn := leaf.Subject.CommonName
	if n.PeerCAs != nil && verify(chain, n.PeerCAs.CertPool(), "") == nil && (n.PeerCN == "" || cn == n.PeerCN) {
		return RolePeer, cn, nil
	}
	if n.ClientCAs != nil && verify(chain, n.ClientCAs.CertPool(), "") == nil {
		return RoleClient, cn, nil
	}
	return RoleNone, "", fmt.Errorf("%w (subject %q)", ErrUntrusted, cn)
}

// verify checks chain against roots; dnsName, if set, must be in the leaf.
// Any extended key usage is accepted: the CAs are leasecluster's own.
func verify(chain []*x509.Certificate, roots *x509.CertPool, dnsName string) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: dnsName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// ServerTLS is the configuration of the node's listeners (gRPC and HTTP):
// TLS 1.2 or later, its current key pair, and every presented certificate
// verified against the current CAs during the handshake. Which role may do
// what is decided per request, by Classify.
func (n *Node) ServerTLS() *tls.Config {
	auth := tls.RequestClientCert
	if n.RequireClientCert {
		auth = tls.RequireAnyClientCert
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.Pair.Certificate(), nil },
		ClientAuth:     auth,
		NextProtos:     []string{"h2", "http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, _, err := n.Classify(cs.PeerCertificates)
			return err
		},
	}
}

// PeerTLS is the configuration for dialing another member: this node's pair
// as its client certificate, and the server's certificate verified against
// the peer CA (and the allowed CN).
func (n *Node) PeerTLS() *tls.Config {
	cfg := DialTLS(n.Pair, n.PeerCAs)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if cn := cs.PeerCertificates[0].Subject.CommonName; n.PeerCN != "" && cn != n.PeerCN {
			return fmt.Errorf("certs: peer certificate CN %q is not the allowed %q", cn, n.PeerCN)
		}
		return nil
	}
	return cfg
}

// DialTLS is a client's configuration: pair (optional) as its certificate,
// re-read when its files change, and the server verified by crypto/tls
// against roots (nil: the system's roots) and the name or IP address the
// caller dials (gRPC sets ServerName to the dialled host for each
// connection). The roots are those of roots' file when DialTLS is called: a
// rotated CA reaches connections configured after it. (Verifying in
// VerifyConnection against the current roots would miss the name check for
// IP addresses, for which crypto/tls reports no server name.)
func DialTLS(pair *KeyPair, roots *Pool) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if roots != nil {
		cfg.RootCAs = roots.CertPool()
	}
	if pair != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.Certificate(), nil }
	}
	return cfg
}
