package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// fileStamp is what tells that a file changed: its modification time and
// size. A rotation that rewrites a file changes one of them.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// reloader holds a value parsed from files and parses them again when one of
// them changes. A reload that fails (a rotation caught half-written) keeps
// the last good value: the next call tries again.
type reloader[T any] struct {
	paths []string
	parse func() (T, error)

	mu     sync.Mutex
	stamps []fileStamp
	value  T
}

func newReloader[T any](parse func() (T, error), paths ...string) (*reloader[T], error) {
	r := &reloader[T]{paths: paths, parse: parse}
	stamps, err := r.stat()
	if err != nil {
		return nil, err
	}
	if r.value, err = parse(); err != nil {
		return nil, err
	}
	r.stamps = stamps
	return r, nil
}

func (r *reloader[T]) stat() ([]fileStamp, error) {
	out := make([]fileStamp, len(r.paths))
	for i, p := range r.paths {
		s, err := stamp(p)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// get returns the value, parsed again first if a file changed. A stat is
// cheap next to a TLS handshake, which is when it is called.
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps, err := r.stat()
	if err != nil || equalStamps(stamps, r.stamps) {
		return r.value
	}
	if v, err := r.parse(); err == nil {
		r.value, r.stamps = v, stamps
	}
	return r.value
}

func equalStamps(a, b []fileStamp) bool {
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// KeyPair is a certificate and its key, read from PEM files and read again
// when either file changes: new handshakes use the new pair.
type KeyPair struct{ r *reloader[*tls.Certificate] }

// LoadKeyPair reads certFile and keyFile; they must hold a matching pair.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	r, err := newReloader(func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		if c.Leaf == nil {
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, err
			}
		}
		return &c, nil
	}, certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: key pair %s, %s: %w", certFile, keyFile, err)
	}
	return &KeyPair{r}, nil
}

// Certificate returns the current pair.
func (k *KeyPair) Certificate() *tls.Certificate { return k.r.get() }

// Pool is a bundle of CA certificates read from a PEM file, and read again
// when the file changes.
type Pool struct{ r *reloader[*x509.CertPool] }

// LoadPool reads a PEM file of one or more CA certificates.
func LoadPool(file string) (*Pool, error) {
	r, err := newReloader(func() (*x509.CertPool, error) {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pem) {
			return nil, errors.New("no PEM certificate in it")
		}
		return p, nil
	}, file)
	if err != nil {
		return nil, fmt.Errorf("certs: CA file %s: %w", file, err)
	}
	return &Pool{r}, nil
}

// CertPool returns the current bundle.
func (p *Pool) CertPool() *x509.CertPool { return p.r.get() }
