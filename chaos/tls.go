package chaos

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/leasecluster/leasecluster/certs"
)

// The client certificates' CNs of a TLS run: the harness's own (status and
// state-hash reads, pokes; listed in --admin-cn, since the state hash is
// for admins) and the workload's (every lease it grants, renews, revokes
// and attaches to is its own, so ownership is exercised, not bypassed).
const (
	AdminCN    = "admin"
	WorkloadCN = "workload"
)

// pki is the certificates of a TLS run, written into one directory: a peer
// CA and a client CA (so that a client certificate can never pass for a
// peer's), a peer certificate per node, and the admin and workload client
// certificates.
type pki struct {
	dir              string
	peerCA, clientCA string // CA certificate files
	nodes            map[string][2]string
	admin, workload  *tls.Config
}

// newPKI writes the certificates into dir. hosts(i) are node i's SANs
// besides 127.0.0.1, localhost and its name: the address it is dialled at
// (its namespace's, in root mode).
func newPKI(dir string, names []string, hosts func(i int) []string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	const validFor = 7 * 24 * time.Hour
	peerCA, err := certs.NewCA("leasechaos peer CA", validFor)
	if err != nil {
		return nil, err
	}
	clientCA, err := certs.NewCA("leasechaos client CA", validFor)
	if err != nil {
		return nil, err
	}
	// The CAs' keys stay in memory: nothing signs after this.
	p := &pki{dir: dir, nodes: map[string][2]string{},
		peerCA: filepath.Join(dir, "peer-ca.crt"), clientCA: filepath.Join(dir, "client-ca.crt")}
	if err := certs.WriteFileAtomic(p.peerCA, peerCA.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	if err := certs.WriteFileAtomic(p.clientCA, clientCA.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	notAfter := time.Now().Add(validFor)
	for i, name := range names {
		is, err := peerCA.Issue(name, append([]string{"127.0.0.1", "localhost", name}, hosts(i)...), time.Time{}, notAfter)
		if err != nil {
			return nil, err
		}
		cert, key, err := is.Write(dir, "peer-"+name)
		if err != nil {
			return nil, err
		}
		p.nodes[name] = [2]string{cert, key}
	}
	roots, err := certs.LoadPool(p.peerCA)
	if err != nil {
		return nil, err
	}
	client := func(cn string) (*tls.Config, error) {
		is, err := clientCA.Issue(cn, nil, time.Time{}, notAfter)
		if err != nil {
			return nil, err
		}
		cert, key, err := is.Write(dir, "client-"+cn)
		if err != nil {
			return nil, err
		}
		pair, err := certs.LoadKeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		// Clients verify the nodes against the peer CA: a node serves its
		// peer certificate.
		return certs.DialTLS(pair, roots), nil
	}
	if p.admin, err = client(AdminCN); err != nil {
		return nil, err
	}
	if p.workload, err = client(WorkloadCN); err != nil {
		return nil, err
	}
	return p, nil
}

// flags are the TLS flags every node shares: client certificates required
// and signed by the client CA, peers by the peer CA, the harness an admin.
func (p *pki) flags() []string {
	return []string{"--trusted-ca-file", p.clientCA, "--client-cert-auth",
		"--peer-trusted-ca-file", p.peerCA, "--admin-cn", AdminCN}
}

// nodeFlags are node name's own certificate flags.
func (p *pki) nodeFlags(name string) []string {
	f, ok := p.nodes[name]
	if !ok {
		panic(fmt.Sprintf("chaos: no certificate for node %q", name))
	}
	return []string{"--cert-file", f[0], "--key-file", f[1]}
}

// dial opens a gRPC connection: plaintext when cfg is nil.
func dial(addr string, cfg *tls.Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
}

// pkiDir is where a run's certificates go.
func pkiDir(runDir string) string { return filepath.Join(runDir, "tls") }
