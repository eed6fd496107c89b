package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// runCLI runs the command line in process and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func poolOf(cs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}

// TestTLSInit runs `tls init` and checks the files (names, modes, CNs,
// SANs, each leaf verified by its own CA and not by the other) and the
// printed serve and client flags.
func TestTLSInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls") // made by init
	out, err := runCLI(t, "tls", "init", "--dir", dir, "--peers", "n1,n2,n3", "--clients", "admin,app1",
		"--hosts", "127.0.0.1,localhost,node.example", "--days", "30")
	if err != nil {
		t.Fatalf("tls init: %v\n%s", err, out)
	}
	var want []string
	for _, n := range []string{"peer-ca", "client-ca", "peer-n1", "peer-n2", "peer-n3", "client-admin", "client-app1"} {
		want = append(want, n+".crt", n+".key")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(e.Name(), ".key") {
			mode = 0o600
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", e.Name(), fi.Mode().Perm(), mode)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}

	peerCA, clientCA := readCert(t, filepath.Join(dir, "peer-ca.crt")), readCert(t, filepath.Join(dir, "client-ca.crt"))
	for _, ca := range []*x509.Certificate{peerCA, clientCA} {
		if !ca.IsCA || ca.NotAfter.Before(time.Now().Add(29*24*time.Hour)) || ca.NotAfter.After(time.Now().Add(31*24*time.Hour)) {
			t.Errorf("CA %q: IsCA %v, not after %v; want a CA valid for 30 days", ca.Subject.CommonName, ca.IsCA, ca.NotAfter)
		}
	}
	any := []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	for _, n := range []string{"n1", "n2", "n3"} {
		c := readCert(t, filepath.Join(dir, "peer-"+n+".crt"))
		if c.Subject.CommonName != n {
			t.Errorf("peer %s: CN %q", n, c.Subject.CommonName)
		}
		if !slices.Equal(c.DNSNames, []string{n, "localhost", "node.example"}) || len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("peer %s: SANs %v %v", n, c.DNSNames, c.IPAddresses)
		}
		for _, host := range []string{n, "127.0.0.1", "localhost", "node.example"} {
			if _, err := c.Verify(x509.VerifyOptions{Roots: poolOf(peerCA), DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("peer %s as %s: not verified by the peer CA: %v", n, host, err)
			}
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: poolOf(peerCA), DNSName: "elsewhere.example"}); err == nil {
			t.Errorf("peer %s verified for a host it was not issued for", n)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: poolOf(clientCA), KeyUsages: any}); err == nil {
			t.Errorf("peer %s verified by the client CA", n)
		}
	}
	for _, n := range []string{"admin", "app1"} {
		c := readCert(t, filepath.Join(dir, "client-"+n+".crt"))
		if c.Subject.CommonName != n {
			t.Errorf("client %s: CN %q", n, c.Subject.CommonName)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: poolOf(clientCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client %s: not verified by the client CA: %v", n, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: poolOf(peerCA), KeyUsages: any}); err == nil {
			t.Errorf("client %s verified by the peer CA", n)
		}
	}

	// The printed flags, one line per peer and per client.
	for _, n := range []string{"n1", "n2", "n3"} {
		line := fmt.Sprintf("  %s: --cert-file %s --key-file %s --trusted-ca-file %s --client-cert-auth --peer-trusted-ca-file %s\n",
			n, filepath.Join(dir, "peer-"+n+".crt"), filepath.Join(dir, "peer-"+n+".key"),
			filepath.Join(dir, "client-ca.crt"), filepath.Join(dir, "peer-ca.crt"))
		if !strings.Contains(out, line) {
			t.Errorf("output lacks the serve flags of %s:\n%s\nin:\n%s", n, line, out)
		}
	}
	for _, n := range []string{"admin", "app1"} {
		line := fmt.Sprintf("  %s: --cacert %s --cert %s --key %s\n", n, filepath.Join(dir, "peer-ca.crt"),
			filepath.Join(dir, "client-"+n+".crt"), filepath.Join(dir, "client-"+n+".key"))
		if !strings.Contains(out, line) {
			t.Errorf("output lacks the client flags of %s:\n%s\nin:\n%s", n, line, out)
		}
	}
}

// TestTLSInitRefusals: bad names, hosts and days, and existing files are
// refused with a clear error, and nothing is written.
func TestTLSInitRefusals(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no dir", []string{"--peers", "n1", "--clients", "a"}, "--dir is required"},
		{"no peers", []string{"--clients", "a"}, "--peers: at least one name"},
		{"no clients", []string{"--peers", "n1"}, "--clients: at least one name"},
		{"empty peer", []string{"--peers", "n1,,n2", "--clients", "a"}, `--peers: empty name`},
		{"blank client", []string{"--peers", "n1", "--clients", "a, "}, `--clients: empty name`},
		{"duplicate peer", []string{"--peers", "n1,n2,n1", "--clients", "a"}, `--peers: name "n1" given twice`},
		{"duplicate peer by case", []string{"--peers", "n1,N1", "--clients", "a"}, `--peers: name "N1" given twice`},
		{"duplicate client", []string{"--peers", "n1", "--clients", "a,b,a"}, `--clients: name "a" given twice`},
		{"peer and client", []string{"--peers", "n1", "--clients", "n1"}, `"n1" is both in --peers and --clients`},
		{"path in a name", []string{"--peers", "../n1", "--clients", "a"}, `--peers: name "../n1"`},
		{"empty host", []string{"--peers", "n1", "--clients", "a", "--hosts", "127.0.0.1,"}, "--hosts: empty host"},
		{"bad host", []string{"--peers", "n1", "--clients", "a", "--hosts", "a b"}, `--hosts: "a b"`},
		{"no days", []string{"--peers", "n1", "--clients", "a", "--days", "0"}, "--days must be at least 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			args := []string{"tls", "init"}
			if c.name != "no dir" {
				args = append(args, "--dir", dir)
			}
			out, err := runCLI(t, append(args, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q (output %q)", err, c.want, out)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("the directory was made: %v", err)
			}
		})
	}

	// Existing files: refused, nothing written, the file untouched; --force
	// writes everything and replaces the CA.
	dir := t.TempDir()
	old := filepath.Join(dir, "peer-n2.key")
	if err := os.WriteFile(old, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"tls", "init", "--dir", dir, "--peers", "n1,n2", "--clients", "a"}
	if _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("existing file: error %v, want one naming %s and --force", err, old)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("refused run left %d entries, want only the existing file", len(entries))
	}
	if data, _ := os.ReadFile(old); string(data) != "keep me" {
		t.Fatal("the existing file was changed")
	}
	if out, err := runCLI(t, append(args, "--force")...); err != nil {
		t.Fatalf("--force: %v\n%s", err, out)
	}
	first := readCert(t, filepath.Join(dir, "peer-ca.crt"))
	if data, _ := os.ReadFile(old); string(data) == "keep me" {
		t.Fatal("--force left the existing file")
	}
	if _, err := runCLI(t, args...); err == nil {
		t.Fatal("a second run without --force overwrote the files")
	}
	if !readCert(t, filepath.Join(dir, "peer-ca.crt")).Equal(first) {
		t.Fatal("a refused run replaced the CA")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 10 {
		t.Fatalf("%d entries after the runs, want 10 (no temporary files left)", len(entries))
	}
}

// TestShellQuote: printed paths with spaces or quotes stay one word.
func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/lc/peer-ca.crt": "/etc/lc/peer-ca.crt",
		"/my certs/a.crt":     "'/my certs/a.crt'",
		"it's":                `'it'\''s'`,
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestClientTLSFlags: --cert and --key go together, unreadable files are
// refused before anything is dialled, and the flags come from the
// environment too; without any of them the CLI stays plaintext.
func TestClientTLSFlags(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCLI(t, "tls", "init", "--dir", dir, "--peers", "n1", "--clients", "app1"); err != nil {
		t.Fatal(err)
	}
	ca, crt, key := filepath.Join(dir, "peer-ca.crt"), filepath.Join(dir, "client-app1.crt"), filepath.Join(dir, "client-app1.key")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cacert", ca, "--cert", crt}, "--cert and --key go together"},
		{[]string{"--key", key}, "--cert and --key go together"},
		{[]string{"--cacert", filepath.Join(dir, "missing.crt")}, "--cacert"},
		{[]string{"--cacert", ca, "--cert", crt, "--key", filepath.Join(dir, "client-ca.key")}, "--cert/--key"},
	} {
		_, err := runCLI(t, append([]string{"lease", "list", "--endpoints", "127.0.0.1:1", "--timeout", "1s"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
	t.Setenv("LEASECLUSTER_CACERT", ca)
	t.Setenv("LEASECLUSTER_CERT", crt)
	if _, err := runCLI(t, "lease", "list", "--endpoints", "127.0.0.1:1", "--timeout", "1s"); err == nil || !strings.Contains(err.Error(), "--cert and --key go together") {
		t.Errorf("LEASECLUSTER_CERT without LEASECLUSTER_KEY: %v", err)
	}
	t.Setenv("LEASECLUSTER_KEY", key)
	if _, err := runCLI(t, "lease", "list", "--endpoints", "127.0.0.1:1", "--timeout", "1s"); err == nil || strings.Contains(err.Error(), "go together") {
		t.Errorf("TLS flags from the environment: %v, want only a connection failure", err)
	}
	if opts, err := clientTLSOptions(); err != nil || len(opts) != 1 {
		t.Errorf("the environment's TLS flags gave %d options, %v", len(opts), err)
	}
}
