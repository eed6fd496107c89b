package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/leasecluster/leasecluster/certs"
)

// Security configures mutual TLS and who may act on whose leases. The zero
// value serves plaintext, as a node without certificate flags does: anyone
// who reaches the gRPC port can then send Raft traffic and end any lease.
type Security struct {
	// CertFile and KeyFile are this node's certificate and key, served on
	// both listeners and presented when it dials its peers. Re-read when the
	// files change.
	CertFile, KeyFile string
	// TrustedCAFile is the CA that signs client certificates.
	TrustedCAFile string
	// ClientCertAuth requires every client to present a certificate that the
	// client CA (or, for members, the peer CA) signed.
	ClientCertAuth bool
	// PeerTrustedCAFile is the CA that signs peer certificates; default
	// TrustedCAFile. Only its certificates may send Raft traffic.
	PeerTrustedCAFile string
	// PeerCertAllowedCN, if set, is the only CN a peer certificate may have.
	PeerCertAllowedCN string
	// AdminCNs may act on every lease, whoever granted it.
	AdminCNs []string
}

// Enabled reports whether the node serves TLS.
func (s Security) Enabled() bool { return s.CertFile != "" }

func (s Security) peerCAFile() string {
	if s.PeerTrustedCAFile != "" {
		return s.PeerTrustedCAFile
	}
	return s.TrustedCAFile
}

// validate refuses a configuration that is incomplete, or that cannot tell
// peers from clients while client certificates are required (a client's
// certificate would then let it send Raft traffic).
func (s Security) validate() error {
	var errs []error
	if (s.CertFile == "") != (s.KeyFile == "") {
		errs = append(errs, errors.New("server: --cert-file and --key-file go together"))
	}
	if !s.Enabled() {
		if s.TrustedCAFile != "" || s.ClientCertAuth || s.PeerTrustedCAFile != "" || s.PeerCertAllowedCN != "" || len(s.AdminCNs) > 0 {
			errs = append(errs, errors.New("server: the CA, client-cert-auth, peer and admin settings need --cert-file and --key-file"))
		}
		return errors.Join(errs...)
	}
	if s.peerCAFile() == "" {
		errs = append(errs, errors.New("server: TLS needs --peer-trusted-ca-file or --trusted-ca-file, to verify peers"))
	}
	if s.ClientCertAuth && s.TrustedCAFile == "" {
		errs = append(errs, errors.New("server: --client-cert-auth needs --trusted-ca-file, the CA of client certificates"))
	}
	if s.ClientCertAuth && s.TrustedCAFile != "" && s.PeerCertAllowedCN == "" && sameCA(s.TrustedCAFile, s.peerCAFile()) {
		errs = append(errs, fmt.Errorf("server: cannot tell peers from clients: clients and peers share the CA %s and no --peer-cert-allowed-cn is set, "+
			"so any client certificate could send Raft traffic; give peers a CA of their own (--peer-trusted-ca-file) or set --peer-cert-allowed-cn", s.TrustedCAFile))
	}
	return errors.Join(errs...)
}

// sameCA reports whether two CA files are one: the same path, or the same
// bytes (a copy). Unreadable files are reported when they are loaded.
func sameCA(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	da, errA := os.ReadFile(a)
	db, errB := os.ReadFile(b)
	return errA == nil && errB == nil && bytes.Equal(bytes.TrimSpace(da), bytes.TrimSpace(db))
}

// load reads the certificates; nil when TLS is off.
func (s Security) load() (*certs.Node, error) {
	if !s.Enabled() {
		return nil, nil
	}
	pair, err := certs.LoadKeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, err
	}
	n := &certs.Node{Pair: pair, PeerCN: s.PeerCertAllowedCN, RequireClientCert: s.ClientCertAuth}
	if n.PeerCAs, err = certs.LoadPool(s.peerCAFile()); err != nil {
		return nil, err
	}
	if s.TrustedCAFile != "" {
		if n.ClientCAs, err = certs.LoadPool(s.TrustedCAFile); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (s Security) isAdmin(identity string) bool {
	return identity != "" && slices.Contains(s.AdminCNs, identity)
}
