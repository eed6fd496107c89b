// Command leasechaos runs leasecluster's Jepsen-style chaos harness (package
// chaos): a cluster of real node processes under faults, a workload of lease
// holders, lock acquirers, readers and revokers, and the checkers. It exits 0
// only if every checker passes, 1 if one fails, and 2 if the run could not be
// carried out.
//
//	go run ./cmd/leasechaos -nodes 3 -duration 60s -nemesis kill,pause,partition,clock -seed 7 -out DIR
//
// With -tls the run makes its own certificates (OUT/tls: a peer CA, a client
// CA, a certificate per node, client certificates "admin" for the harness
// and "workload" for the workload), starts every node with mutual TLS and
// --client-cert-auth, and dials every connection, the /chaos/ controls
// included (https), with a client certificate.
//
// With -bug NAME the nodes run a deliberately broken variant of the server
// (LEASECLUSTER_CHAOS_BUG; one planted bug per checker, listed in the flag's
// help): the run must fail, as chaos/bite_test.go asserts for each.
//
// Run as root for network namespaces and nftables partitions; otherwise the
// nodes share loopback and partitions are skipped. Ctrl-C (or SIGTERM) stops
// the run and removes every process, namespace and rule it made.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/leasecluster/leasecluster/chaos"
)

// bugs are the broken variants of the chaos build, as internal/faults.Bugs
// names them (a command may not import internal/faults): the first five,
// then one for each checker (issue 23). chaos/bite_test.go runs each.
var bugs = []string{
	"skip-verify", "no-extend", "early-expiry", "leader-only-revoke", "wall-clock",
	"immortal-lease", "duplicate-id", "ttl-misreport", "stale-read", "diverge", "double-holder", "early-expiry-small",
	"token-per-term", "resurrect", "orphan-items", "shed-load",
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		opts    chaos.Options
		nemeses string
		quiet   bool
		cleanup bool
	)
	flag.IntVar(&opts.Nodes, "nodes", 3, "cluster size: 3 or 5")
	flag.DurationVar(&opts.Duration, "duration", 60*time.Second, "how long the workload and the faults run")
	flag.StringVar(&nemeses, "nemesis", "kill,pause,partition,clock", "comma-separated faults: "+strings.Join(chaos.AllNemeses, ",")+" (or all)")
	flag.Int64Var(&opts.Seed, "seed", 1, "seed of the fault schedule and the workload's choices")
	flag.StringVar(&opts.OutDir, "out", "", "output directory (default: a new temporary directory)")
	flag.StringVar(&opts.Binary, "binary", "", "a chaos build of leasecluster (default: build one with -tags chaos)")
	flag.StringVar(&opts.Bug, "bug", "", "run a deliberately broken server: "+strings.Join(bugs, ", "))
	flag.BoolVar(&opts.Loopback, "loopback", false, "use loopback addresses even as root (no partitions)")
	flag.BoolVar(&opts.TLS, "tls", false, "mutual TLS: certificates made in OUT/tls, nodes with --client-cert-auth, every connection with a client certificate")
	flag.DurationVar(&opts.TTL, "ttl", 3*time.Second, "lease TTL the workload asks for")
	flag.IntVar(&opts.Holders, "holders", 3, "lease holders in the workload (more leases, more renewals close to a fault)")
	flag.DurationVar(&opts.Election, "election-timeout", time.Second, "the nodes' election (and heartbeat) timeout; also the extension")
	flag.BoolVar(&quiet, "q", false, "no progress log on stderr")
	flag.BoolVar(&cleanup, "cleanup", false, "only remove namespaces and links left behind by killed runs, then exit")
	flag.Parse()
	if cleanup {
		removed, err := chaos.CleanupStale(context.Background())
		for _, r := range removed {
			fmt.Println("removed", r)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "leasechaos:", err)
			return 2
		}
		return 0
	}
	if opts.Bug != "" && !slices.Contains(bugs, opts.Bug) {
		fmt.Fprintf(os.Stderr, "leasechaos: unknown bug %q (want one of %s)\n", opts.Bug, strings.Join(bugs, ", "))
		return 2
	}
	if opts.Nodes != 3 && opts.Nodes != 5 {
		fmt.Fprintln(os.Stderr, "leasechaos: -nodes must be 3 or 5")
		return 2
	}
	if nemeses == "all" {
		nemeses = strings.Join(chaos.AllNemeses, ",")
	}
	for _, n := range strings.Split(nemeses, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(chaos.AllNemeses, n) {
			fmt.Fprintf(os.Stderr, "leasechaos: unknown nemesis %q\n", n)
			return 2
		}
		opts.Nemeses = append(opts.Nemeses, n)
	}
	if opts.OutDir == "" {
		dir, err := os.MkdirTemp("", "leasechaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "leasechaos:", err)
			return 2
		}
		opts.OutDir = dir
	}
	if !quiet {
		opts.Log = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := chaos.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leasechaos:", err)
		return 2
	}
	fmt.Print(sum.Text())
	fmt.Printf("  output: %s\n", opts.OutDir)
	if !sum.OK {
		return 1
	}
	return 0
}
