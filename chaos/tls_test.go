package chaos

import (
	"crypto/tls"
	"net"
	"os"
	"slices"
	"testing"

	"github.com/leasecluster/leasecluster/certs"
)

// TestPKI checks a TLS run's certificates as a node would see them: its
// own peer certificate served for its namespace address, the harness's and
// the workload's certificates classified as clients with their CNs, and the
// flags that point at the files.
func TestPKI(t *testing.T) {
	dir := t.TempDir()
	names := []string{"n1", "n2", "n3"}
	p, err := newPKI(dir, names, func(i int) []string { return []string{[]string{"10.77.30.11", "10.77.30.12", "10.77.30.13"}[i]} })
	if err != nil {
		t.Fatal(err)
	}
	flags := p.flags()
	for _, want := range []string{"--client-cert-auth", "--trusted-ca-file", "--peer-trusted-ca-file", "--admin-cn", AdminCN} {
		if !slices.Contains(flags, want) {
			t.Errorf("flags %v lack %s", flags, want)
		}
	}
	f := p.nodeFlags("n2")
	if len(f) != 4 || f[0] != "--cert-file" || f[2] != "--key-file" {
		t.Fatalf("nodeFlags(n2) = %v", f)
	}
	if st, err := os.Stat(f[3]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file %s: %v, mode %v; want 0600", f[3], err, st.Mode().Perm())
	}
	pair, err := certs.LoadKeyPair(f[1], f[3])
	if err != nil {
		t.Fatal(err)
	}
	node := &certs.Node{Pair: pair, RequireClientCert: true}
	if node.PeerCAs, err = certs.LoadPool(p.peerCA); err != nil {
		t.Fatal(err)
	}
	if node.ClientCAs, err = certs.LoadPool(p.clientCA); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		host string
		role certs.Role
		cn   string
	}{
		{"admin at the namespace address", p.admin, "10.77.30.12", certs.RoleClient, AdminCN},
		{"admin by name", p.admin, "n2", certs.RoleClient, AdminCN},
		{"workload on loopback", p.workload, "127.0.0.1", certs.RoleClient, WorkloadCN},
		{"peer", node.PeerTLS(), "localhost", certs.RolePeer, "n2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			role, cn, err := handshake(node, tc.cfg, tc.host)
			if err != nil || role != tc.role || cn != tc.cn {
				t.Fatalf("handshake: role %v, CN %q, %v; want %v, %q", role, cn, err, tc.role, tc.cn)
			}
		})
	}
	// A name the certificate does not carry is refused. (An IP address
	// it does not carry is not: certs.DialTLS checks the name crypto/tls
	// reports, which is empty for an address.)
	if _, _, err := handshake(node, p.admin, "n1"); err == nil {
		t.Fatal("n2's certificate accepted for the name n1")
	}
}

// handshake runs a TLS handshake between node's server configuration and
// client (dialling host) and classifies what the client presented.
func handshake(node *certs.Node, client *tls.Config, host string) (certs.Role, string, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cfg := client.Clone()
	cfg.ServerName = host
	errc := make(chan error, 1)
	go func() { errc <- tls.Client(b, cfg).Handshake() }()
	srv := tls.Server(a, node.ServerTLS())
	srvErr := srv.Handshake()
	if srvErr != nil {
		// The client's side may still be waiting for a reply: unblock it.
		a.Close()
	}
	if err := <-errc; err != nil {
		return certs.RoleNone, "", err
	}
	if srvErr != nil {
		return certs.RoleNone, "", srvErr
	}
	return node.Classify(srv.ConnectionState().PeerCertificates)
}
