package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/leasecluster/leasecluster/snapshot"
)

func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Work with a node's Raft snapshots"}
	var output string
	inspect := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Validate a snapshot and show what it holds",
		Long: `Validate a snapshot (magic, version, every record, checksum) and show what it
holds. PATH is a snapshot directory under <data-dir>/snapshots or its state.bin file.`,
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
	cmd.AddCommand(inspect)
	return cmd
}
