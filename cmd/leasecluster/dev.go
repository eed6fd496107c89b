package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasecluster/leasecluster/server"
)

func newDevCmd() *cobra.Command {
	var (
		dataDir  string
		grpcPort int
		httpPort int
		nf       nodeFlags
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local three-node cluster on loopback",
		Long: `Run a three-node cluster on 127.0.0.1 in this process, for trying
leasecluster out. Data lives in a temporary directory (removed on exit) unless
--data-dir is given. Ctrl-C stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := dataDir
			if dir == "" {
				tmp, err := os.MkdirTemp("", "leasecluster-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			var peers []server.Peer
			for i := range 3 {
				peers = append(peers, server.Peer{Name: fmt.Sprintf("n%d", i+1), Address: fmt.Sprintf("127.0.0.1:%d", grpcPort+i)})
			}
			var nodes []*server.Node
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				// The leader first, so that it hands leadership to a follower
				// that is still running.
				slices.SortStableFunc(nodes, func(a, b *server.Node) int {
					if a.IsLeader() == b.IsLeader() {
						return 0
					} else if a.IsLeader() {
						return -1
					}
					return 1
				})
				for _, n := range nodes {
					n.Close(ctx)
				}
			}()
			for i, p := range peers {
				cfg := server.Config{
					Name:           p.Name,
					DataDir:        filepath.Join(dir, p.Name),
					GRPCAddr:       p.Address,
					HTTPAddr:       fmt.Sprintf("127.0.0.1:%d", httpPort+i),
					InitialCluster: peers,
				}
				nf.apply(&cfg)
				n, err := server.New(cfg)
				if err != nil {
					return fmt.Errorf("start %s: %w", p.Name, err)
				}
				nodes = append(nodes, n)
			}
			printDevBanner(cmd, nodes, dir)
			waitForSignal()
			fmt.Fprintln(cmd.OutOrStdout(), "stopping...")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep the nodes' data here instead of a temporary directory")
	cmd.Flags().IntVar(&grpcPort, "grpc-port", 7001, "gRPC port of the first node; the others use the next ports")
	cmd.Flags().IntVar(&httpPort, "http-port", 8001, "HTTP port of the first node; the others use the next ports")
	nf.register(cmd)
	return cmd
}

func printDevBanner(cmd *cobra.Command, nodes []*server.Node, dir string) {
	var grpcs, https []string
	for _, n := range nodes {
		grpcs = append(grpcs, n.Addr())
		https = append(https, n.HTTPAddr())
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "leasecluster dev cluster: 3 nodes, data in %s\n", dir)
	fmt.Fprintf(w, "  gRPC endpoints: %s\n", strings.Join(grpcs, ","))
	fmt.Fprintf(w, "  HTTP endpoints: %s\n", strings.Join(https, ","))
	fmt.Fprintf(w, `
Try, in another terminal:
  export LEASECLUSTER_ENDPOINTS=%s
  leasecluster cluster status
  leasecluster lease grant --ttl 10s
  leasecluster item attach my/lock --lease <ID> --value me
  curl -s -XPOST http://%s/v1/leases -d '{"ttl_ms":10000}'
  curl -s http://%s/v1/leases

Ctrl-C stops the cluster.
`, strings.Join(grpcs, ","), https[1], https[2])
}
