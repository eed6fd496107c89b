package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCAWriteLoad: a CA written to files reads back as the same CA, its key
// file is 0600, and the loaded CA issues certificates the original verifies.
func TestCAWriteLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("peer-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := ca.Write(dir, "peer-ca")
	if err != nil {
		t.Fatal(err)
	}
	if cf != filepath.Join(dir, "peer-ca.crt") || kf != filepath.Join(dir, "peer-ca.key") {
		t.Fatalf("paths %s, %s", cf, kf)
	}
	for f, mode := range map[string]os.FileMode{cf: 0o644, kf: 0o600} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", f, fi.Mode().Perm(), err, mode)
		}
	}
	back, err := LoadCA(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) || !back.Key.Equal(ca.Key) {
		t.Fatal("the loaded CA differs from the written one")
	}
	is, err := back.Issue("n1", []string{"127.0.0.1"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	icf, ikf, err := is.Write(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := LoadKeyPair(icf, ikf)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := kp.Certificate().Leaf.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Fatalf("a certificate of the loaded CA does not verify: %v", err)
	}

	// Refusals: a leaf is not a CA, a key of another CA does not match.
	if _, err := LoadCA(icf, ikf); err == nil {
		t.Error("a leaf certificate loaded as a CA")
	}
	other, _ := NewCA("other", time.Hour)
	_, okf, err := other.Write(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(cf, okf); err == nil {
		t.Error("a CA loaded with another CA's key")
	}
	if _, err := LoadCA(cf, filepath.Join(dir, "missing.key")); err == nil {
		t.Error("a CA loaded without its key file")
	}
}
