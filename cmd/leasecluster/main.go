// Command leasecluster runs a leasecluster node (serve), a local three-node
// cluster (dev), and client commands against a running cluster (lease, item,
// cluster). Every flag can also be set through an environment variable
// LEASECLUSTER_<FLAG_IN_UPPER_SNAKE_CASE>; a flag on the command line wins.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", oneLine(tlsHint(err)))
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "leasecluster",
		Short:         "A Raft-replicated lease service",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd)
		},
	}
	root.AddCommand(newServeCmd(), newDevCmd(), newSnapshotCmd(), newTLSCmd())
	addClientCommands(root)
	return root
}

// envName is the environment variable for a flag: --data-dir is
// LEASECLUSTER_DATA_DIR.
func envName(flag string) string {
	return "LEASECLUSTER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag of cmd (and inherited ones) that the command line
// left unset from its environment variable, if present.
func applyEnv(cmd *cobra.Command) error {
	var errs []string
	apply := func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	}
	cmd.Flags().VisitAll(apply)
	cmd.InheritedFlags().VisitAll(apply)
	if len(errs) > 0 {
		return fmt.Errorf("invalid environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// oneLine folds an error onto one line for the exit message.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
