// Command etcdnode runs one etcd v3.6 member (embed.Etcd, etcd's default
// settings: fsync on, 100 ms heartbeat, 1 s election) until SIGTERM or
// SIGINT, or SIGKILL, which is why every member is a process of its own.
// The benchmark (the parent directory) builds and starts three of them.
//
// It is a separate program rather than a hidden mode of the benchmark binary
// because etcd's go.etcd.io/raft/v3/raftpb and leasecluster's leasepb both
// register a protobuf file named "raft.proto", and the protobuf runtime
// panics when one binary links both.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "etcdnode:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("etcdnode", flag.ContinueOnError)
	name := fs.String("name", "", "member name")
	dataDir := fs.String("data-dir", "", "data directory")
	peerURL := fs.String("peer-url", "", "peer URL")
	clientURL := fs.String("client-url", "", "client URL")
	initial := fs.String("initial-cluster", "", "initial cluster")
	snapCount := fs.Uint64("snapshot-count", 0, "committed entries between snapshots (0: etcd's default)")
	// TLS, with etcd's own flag names (https URLs above): the client side
	// and the peer side, each with its CA and certificate authentication.
	var client, peer transport.TLSInfo
	fs.StringVar(&client.CertFile, "cert-file", "", "client-facing server certificate")
	fs.StringVar(&client.KeyFile, "key-file", "", "its key")
	fs.StringVar(&client.TrustedCAFile, "trusted-ca-file", "", "CA of client certificates")
	fs.BoolVar(&client.ClientCertAuth, "client-cert-auth", false, "require client certificates")
	fs.StringVar(&peer.CertFile, "peer-cert-file", "", "peer certificate (served and presented)")
	fs.StringVar(&peer.KeyFile, "peer-key-file", "", "its key")
	fs.StringVar(&peer.TrustedCAFile, "peer-trusted-ca-file", "", "CA of peer certificates")
	fs.BoolVar(&peer.ClientCertAuth, "peer-client-cert-auth", false, "require peer certificates")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pu, err := url.Parse(*peerURL)
	if err != nil {
		return err
	}
	cu, err := url.Parse(*clientURL)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.InitialCluster = *initial
	cfg.ClientTLSInfo, cfg.PeerTLSInfo = client, peer
	cfg.InitialClusterToken = "bench"
	if *snapCount > 0 {
		cfg.SnapshotCount = *snapCount
	}
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored when the data dir already holds a member
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
	fmt.Fprintf(os.Stderr, "etcd member %s ready\n", *name)
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}
