package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/client"
)

// The `tls` command group (Consul's `consul tls` is the model) and the
// client commands' TLS flags (etcdctl's names).

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Generate the CAs and certificates for mutual TLS"}
	cmd.AddCommand(newTLSInitCmd())
	return cmd
}

// tlsInitOptions are the flags of `tls init`.
type tlsInitOptions struct {
	dir     string
	peers   []string
	clients []string
	hosts   []string
	days    int
	force   bool
}

func newTLSInitCmd() *cobra.Command {
	var o tlsInitOptions
	cmd := &cobra.Command{
		Use:   "init --dir DIR --peers n1,n2,n3 --clients admin,app1",
		Short: "Write a peer CA, a client CA and a certificate per peer and per client",
		Long: `init writes, into --dir:
  peer-ca.crt, peer-ca.key           the CA of the nodes' certificates
  client-ca.crt, client-ca.key       the CA of the clients' certificates
  peer-NAME.crt, peer-NAME.key       per peer: CN NAME, valid for NAME and --hosts
  client-NAME.crt, client-NAME.key   per client: CN NAME, its identity
Keys are written with mode 0600. Existing files are left alone (and nothing
is written) unless --force. It prints the serve flags of every peer and the
client flags of every client. Nodes present their peer certificate to
clients too, so clients trust the peer CA (--cacert peer-ca.crt) and must
dial an address in --hosts (or a peer's name).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return tlsInit(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "directory to write the files to (made if missing; required)")
	f.StringSliceVar(&o.peers, "peers", nil, "comma-separated peer (node) names (required)")
	f.StringSliceVar(&o.clients, "clients", nil, "comma-separated client names, their certificates' CNs (required)")
	f.StringSliceVar(&o.hosts, "hosts", []string{"127.0.0.1", "localhost"}, "comma-separated host names and IP addresses every peer certificate is valid for, besides the peer's name")
	f.IntVar(&o.days, "days", 365, "validity of the CAs and certificates, in days")
	f.BoolVar(&o.force, "force", false, "overwrite existing files")
	return cmd
}

// tlsFile is one certificate and key to write.
type tlsFile struct {
	name     string // file name without .crt/.key
	cn       string
	hosts    []string
	ca       bool
	crt, key string // paths
}

// nameRE is what a peer or client name may be: it becomes a CN, a file name
// and, for a peer, a DNS SAN.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// hostRE is a DNS name as a SAN takes it (an IP address is parsed first).
var hostRE = regexp.MustCompile(`^[A-Za-z0-9*_]([A-Za-z0-9._-]{0,252})$`)

// checkNames refuses empty, malformed and duplicate names (compared without
// case: file systems and DNS may not tell case apart). seen spans both lists.
func checkNames(flag string, names []string, seen map[string]string) error {
	if len(names) == 0 {
		return fmt.Errorf("--%s: at least one name is required", flag)
	}
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			return fmt.Errorf("--%s: empty name in %q", flag, strings.Join(names, ","))
		}
		if !nameRE.MatchString(n) {
			return fmt.Errorf("--%s: name %q: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", flag, n)
		}
		k := strings.ToLower(n)
		if prev, ok := seen[k]; ok {
			if prev == flag {
				return fmt.Errorf("--%s: name %q given twice", flag, n)
			}
			return fmt.Errorf("name %q is both in --%s and --%s: a certificate's CN is its holder's identity", n, prev, flag)
		}
		seen[k] = flag
	}
	return nil
}

// checkHosts refuses empty and malformed hosts and drops repeats.
func checkHosts(hosts []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("--hosts: empty host in %q", strings.Join(hosts, ","))
		}
		if net.ParseIP(h) == nil && !hostRE.MatchString(h) {
			return nil, fmt.Errorf("--hosts: %q is neither an IP address nor a DNS name", h)
		}
		if k := strings.ToLower(h); !seen[k] {
			seen[k] = true
			out = append(out, h)
		}
	}
	return out, nil
}

// plan checks the options and lists the files to write, CAs first.
func (o tlsInitOptions) plan() ([]tlsFile, error) {
	if o.dir == "" {
		return nil, errors.New("--dir is required (or LEASECLUSTER_DIR)")
	}
	if o.days < 1 {
		return nil, fmt.Errorf("--days must be at least 1, not %d", o.days)
	}
	seen := map[string]string{}
	if err := checkNames("peers", o.peers, seen); err != nil {
		return nil, err
	}
	if err := checkNames("clients", o.clients, seen); err != nil {
		return nil, err
	}
	hosts, err := checkHosts(o.hosts)
	if err != nil {
		return nil, err
	}
	files := []tlsFile{
		{name: "peer-ca", cn: "leasecluster peer CA", ca: true},
		{name: "client-ca", cn: "leasecluster client CA", ca: true},
	}
	for _, p := range o.peers {
		sans := []string{p}
		for _, h := range hosts {
			if !strings.EqualFold(h, p) {
				sans = append(sans, h)
			}
		}
		files = append(files, tlsFile{name: "peer-" + p, cn: p, hosts: sans})
	}
	for _, c := range o.clients {
		files = append(files, tlsFile{name: "client-" + c, cn: c})
	}
	for i := range files {
		files[i].crt = filepath.Join(o.dir, files[i].name+".crt")
		files[i].key = filepath.Join(o.dir, files[i].name+".key")
	}
	return files, nil
}

// tlsInit is `tls init`: it checks everything, makes every key and
// certificate in memory, then writes them; a refusal writes nothing, and a
// failed write removes what this run wrote.
func tlsInit(w io.Writer, o tlsInitOptions) error {
	files, err := o.plan()
	if err != nil {
		return err
	}
	if !o.force {
		var exist []string
		for _, f := range files {
			for _, p := range []string{f.crt, f.key} {
				if _, err := os.Lstat(p); err == nil {
					exist = append(exist, p)
				} else if !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
		if len(exist) > 0 {
			return fmt.Errorf("%d file(s) exist, e.g. %s: nothing written; use --force to overwrite them", len(exist), exist[0])
		}
	}
	validFor := time.Duration(o.days) * 24 * time.Hour
	notAfter := time.Now().Add(validFor)
	peerCA, err := certs.NewCA(files[0].cn, validFor)
	if err != nil {
		return err
	}
	clientCA, err := certs.NewCA(files[1].cn, validFor)
	if err != nil {
		return err
	}
	issued := make([]certs.Issued, len(files))
	for i, f := range files {
		switch {
		case i == 0 || i == 1:
			ca := []*certs.CA{peerCA, clientCA}[i]
			key, err := ca.KeyPEM()
			if err != nil {
				return err
			}
			issued[i] = certs.Issued{CertPEM: ca.CertPEM(), KeyPEM: key}
		case strings.HasPrefix(f.name, "peer-"):
			issued[i], err = peerCA.Issue(f.cn, f.hosts, time.Time{}, notAfter)
		default:
			issued[i], err = clientCA.Issue(f.cn, nil, time.Time{}, notAfter)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	var written []string
	for i, f := range files {
		if _, _, err := issued[i].Write(o.dir, f.name); err != nil {
			for _, p := range written {
				os.Remove(p)
			}
			os.Remove(f.key) // Write writes the key first
			return fmt.Errorf("writing %s: %w (files of this run removed)", f.name, err)
		}
		written = append(written, f.crt, f.key)
	}
	printTLSFlags(w, o, files)
	return nil
}

// printTLSFlags prints the flags that use the files just written.
func printTLSFlags(w io.Writer, o tlsInitOptions, files []tlsFile) {
	q := shellQuote
	peerCA, clientCA := files[0], files[1]
	fmt.Fprintf(w, "Wrote %d files to %s.\n", 2*len(files), q(o.dir))
	fmt.Fprintf(w, "The CA keys %s and %s sign new certificates: keep them off the nodes.\n\n", q(peerCA.key), q(clientCA.key))
	fmt.Fprintln(w, "serve flags of each peer (with its --name, addresses and --initial-cluster as before):")
	for _, f := range files[2:] {
		if strings.HasPrefix(f.name, "peer-") {
			fmt.Fprintf(w, "  %s: --cert-file %s --key-file %s --trusted-ca-file %s --client-cert-auth --peer-trusted-ca-file %s\n",
				f.cn, q(f.crt), q(f.key), q(clientCA.crt), q(peerCA.crt))
		}
	}
	fmt.Fprintln(w, "\nclient flags of each client (or LEASECLUSTER_CACERT, LEASECLUSTER_CERT, LEASECLUSTER_KEY):")
	for _, f := range files[2:] {
		if strings.HasPrefix(f.name, "client-") {
			fmt.Fprintf(w, "  %s: --cacert %s --cert %s --key %s\n", f.cn, q(peerCA.crt), q(f.crt), q(f.key))
		}
	}
	hosts, _ := checkHosts(o.hosts)
	fmt.Fprintf(w, "\nPeer certificates are valid for the peer's name and %s: clients and peers must dial one of these.\n",
		strings.Join(hosts, ", "))
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// clientTLS holds the client commands' TLS flags (etcdctl's names).
var clientTLS struct {
	cacert, cert, key string
}

// addClientTLSFlags adds --cacert, --cert and --key to a client command
// group (LEASECLUSTER_CACERT, _CERT, _KEY through applyEnv).
func addClientTLSFlags(pf *pflag.FlagSet) {
	pf.StringVar(&clientTLS.cacert, "cacert", "", "CA bundle that verifies the nodes (the peer CA); setting it, --cert or --key dials with TLS")
	pf.StringVar(&clientTLS.cert, "cert", "", "client certificate to present (with --key)")
	pf.StringVar(&clientTLS.key, "key", "", "key of the client certificate (with --cert)")
}

// clientTLSOptions turns --cacert, --cert and --key into a client option:
// none of them set is plaintext; with any of them the client dials with TLS,
// verifying the nodes against --cacert (without it, the system's roots) and
// presenting --cert/--key if set.
func clientTLSOptions() ([]client.Option, error) {
	t := clientTLS
	if t.cacert == "" && t.cert == "" && t.key == "" {
		return nil, nil
	}
	if (t.cert == "") != (t.key == "") {
		return nil, errors.New("--cert and --key go together: set both or neither")
	}
	var roots *certs.Pool
	if t.cacert != "" {
		var err error
		if roots, err = certs.LoadPool(t.cacert); err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
	}
	var pair *certs.KeyPair
	if t.cert != "" {
		var err error
		if pair, err = certs.LoadKeyPair(t.cert, t.key); err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
	}
	return []client.Option{client.WithTLS(certs.DialTLS(pair, roots))}, nil
}

// newCLIClient is client.New with the TLS flags applied.
func newCLIClient(ctx context.Context, eps []string) (*client.Client, error) {
	opts, err := clientTLSOptions()
	if err != nil {
		return nil, err
	}
	return client.New(ctx, eps, opts...)
}

// tlsHint adds a hint to a failure to reach the cluster that looks like a
// TLS mismatch: a node that closed a plaintext connection (it serves TLS),
// or a handshake that failed.
func tlsHint(err error) error {
	if err == nil || !errors.Is(err, client.ErrNoLeader) {
		return err
	}
	msg := err.Error()
	t := clientTLS
	if t.cacert == "" && t.cert == "" && t.key == "" {
		if strings.Contains(msg, "error reading server preface") {
			return fmt.Errorf("%w; the node closed the plaintext connection: if the cluster uses TLS, set --cacert, --cert and --key (or LEASECLUSTER_CACERT, LEASECLUSTER_CERT, LEASECLUSTER_KEY)", err)
		}
		return err
	}
	for _, s := range []string{"handshake failed", "tls:", "x509:", "server preface", "broken pipe", "connection reset"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w; TLS failed: --cacert must hold the CA of the nodes' certificates (peer-ca.crt), --cert/--key a certificate of the cluster's client CA, and the endpoint a host the node's certificate names", err)
		}
	}
	return err
}
