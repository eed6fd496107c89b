package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/server"
	"github.com/leasecluster/leasecluster/snapshot"
)

func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up, restore and inspect snapshots"}
	var output string
	inspect := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Validate a snapshot and show what it holds",
		Long: `Validate a snapshot (magic, version, every record, checksum) and show what it
holds. PATH is a file written by snapshot save, a snapshot directory under
<data-dir>/snapshots or its state.bin file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				path = filepath.Join(path, "state.bin")
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			sum, err := snapshot.Inspect(bufio.NewReader(f))
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(sum)
			}
			fmt.Fprint(cmd.OutOrStdout(), sum.String())
			return nil
		},
	}
	inspect.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(inspect, newSnapshotSaveCmd(), newSnapshotRestoreCmd())
	return cmd
}

func newSnapshotSaveCmd() *cobra.Command {
	var (
		output  string
		timeout time.Duration
	)
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Stream a consistent snapshot from the leader into FILE",
		Long: `Stream a consistent snapshot of the leader's state (every write acknowledged
before the command started) into FILE. The bytes go to a temporary file beside
FILE, which is synced and validated in full (every record, the checksum) before
it is renamed to FILE; on any failure FILE is left as it was. With TLS the
client certificate must be an admin's (--admin-cn of the nodes).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", output)
			}
			eps, err := endpointList()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, err := newCLIClient(ctx, eps)
			if err != nil {
				return err
			}
			defer c.Close()
			var info client.SnapshotInfo
			sum, err := snapshot.SaveFile(args[0], func(w io.Writer) error {
				info, err = c.Snapshot(ctx, w)
				return err
			})
			if err != nil {
				return err
			}
			if output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					File    string           `json:"file"`
					Summary snapshot.Summary `json:"summary"`
				}{args[0], sum})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved %s: index %d, term %d, %d leases, %d items, %d bytes\n",
				args[0], info.Index, info.Term, sum.Leases, sum.Items, sum.Size)
			return nil
		},
	}
	fl := save.Flags()
	fl.StringVar(&cf.endpoints, "endpoints", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", "comma-separated gRPC endpoints of the cluster")
	fl.StringVarP(&output, "output", "o", "text", "output format: text or json")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "how long finding the leader and receiving the snapshot may take")
	addClientTLSFlags(fl)
	return save
}

func newSnapshotRestoreCmd() *cobra.Command {
	var (
		cfg            server.Config
		initialCluster string
		grace          string
		output         string
	)
	restore := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --name NAME --initial-cluster name=host:port,...",
		Short: "Seed a new node's data dir from a snapshot file, for a new cluster",
		Long: `Seed DIR (absent or empty) so that serve --data-dir DIR starts a node of a new
cluster whose members are --initial-cluster, with FILE's state applied. Run it
on every member with the same FILE and the same --restore-grace, then start
every member with serve (its --initial-cluster is then ignored).

Every restored lease gets its remaining TTL at save time (its checkpointed
remainder, else its TTL) plus --restore-grace ("ttl": each lease's own TTL, the
default; or a duration), counted from the node's start, so clients can
reconnect before anything expires. Revisions (fencing tokens) of the new
cluster continue above every restored one. The grace and the file's checksum
are recorded in the restored state: members restored differently never agree
on their state hash (cluster status shows it), and the command prints the hash
every member must show before the new cluster's first entry.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := snapshot.ParseGrace(grace)
			if err != nil {
				return err
			}
			if cfg.InitialCluster, err = server.ParseInitialCluster(initialCluster); err != nil {
				return err
			}
			if len(cfg.InitialCluster) == 0 {
				return fmt.Errorf("--initial-cluster is required")
			}
			cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.Name, Level: hclog.Warn, Output: cmd.ErrOrStderr()})
			res, err := server.Restore(cfg, args[0], g)
			if err != nil {
				return err
			}
			if output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "restored %s into %s for node %s of %d members\n", args[0], res.DataDir, cfg.Name, len(res.Members))
			fmt.Fprintf(w, "index %d (saved at %d; highest revision %d), term %d\n", res.Index, res.SourceIndex, res.MaxRevision, res.Term)
			fmt.Fprintf(w, "%d leases (grace %s), %d items\n", res.Leases, res.Grace, res.Items)
			fmt.Fprintf(w, "state hash %s\n", res.StateHash)
			return nil
		},
	}
	fl := restore.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", "", "the new node's data dir, absent or empty (required)")
	fl.StringVar(&cfg.Name, "name", "", "the new node's name, one of --initial-cluster (required)")
	fl.StringVar(&initialCluster, "initial-cluster", "", "name=host:port,... of every member of the new cluster (required)")
	fl.StringVar(&grace, "restore-grace", "ttl", `added to every lease's remaining TTL: "ttl" (each lease's own TTL) or a duration; the same on every member`)
	fl.StringVarP(&output, "output", "o", "text", "output format: text or json")
	restore.MarkFlagRequired("data-dir")
	restore.MarkFlagRequired("name")
	restore.MarkFlagRequired("initial-cluster")
	return restore
}
