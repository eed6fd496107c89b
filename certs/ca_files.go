package certs

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeyPEM is the CA's private key, PEM encoded (PKCS #8), as Issued.KeyPEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Write writes the CA's certificate to dir/name.crt (mode 0644) and its key
// to dir/name.key (mode 0600), each atomically as Issued.Write does, and
// returns their paths. The key signs new certificates: keep it away from
// the nodes.
func (ca *CA) Write(dir, name string) (certFile, keyFile string, err error) {
	key, err := ca.KeyPEM()
	if err != nil {
		return "", "", err
	}
	return Issued{CertPEM: ca.CertPEM(), KeyPEM: key}.Write(dir, name)
}

// LoadCA reads a CA written by (*CA).Write: a CA certificate and its ECDSA
// key, which must match.
func LoadCA(certFile, keyFile string) (*CA, error) {
	ca, err := loadCA(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: CA %s, %s: %w", filepath.Clean(certFile), filepath.Clean(keyFile), err)
	}
	return ca, nil
}

func loadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate in the certificate file")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("the certificate is not a CA's")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PKCS #8 private key in the key file")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not an ECDSA key", k)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("the key does not match the certificate")
	}
	return &CA{Cert: cert, Key: key}, nil
}
