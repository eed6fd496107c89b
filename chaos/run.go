package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/leasecluster/leasecluster/client"
)

// ErrBuild is returned when the chaos build of the node cannot be made.
var ErrBuild = errors.New("chaos: build failed")

// Options configure a run.
type Options struct {
	Binary   string        // a chaos build of leasecluster; built into OutDir when empty
	Nodes    int           // 3 or 5
	Duration time.Duration // how long the workload and the nemesis run
	Nemeses  []string      // subset of AllNemeses
	Seed     int64
	OutDir   string
	Bug      string // LEASECLUSTER_CHAOS_BUG for the nodes: a deliberately broken server
	Holders  int    // lease holders in the workload; default 3
	Loopback bool   // use loopback even as root (no partitions)
	TTL      time.Duration
	Election time.Duration
	TLS      bool      // mutual TLS on every connection, --client-cert-auth on the nodes
	Log      io.Writer // progress; default io.Discard
}

func (o *Options) defaults() {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Duration == 0 {
		o.Duration = 60 * time.Second
	}
	if o.Holders == 0 {
		o.Holders = 3
	}
	if o.TTL == 0 {
		o.TTL = 3 * time.Second
	}
	if o.Election == 0 {
		o.Election = time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Summary is summary.json.
type Summary struct {
	OK       bool               `json:"ok"`
	Seed     int64              `json:"seed"`
	Ops      int                `json:"ops"`
	Faults   int                `json:"faults"`
	Checkers map[string]Verdict `json:"checkers"`
	// Availability is the share of operations outside fault windows that
	// succeeded (the availability checker's measure).
	Availability float64 `json:"availability"`
	// Cancelled: the run was stopped (SIGINT, ctx) before its end; the
	// checkers judged what was recorded, and the run does not pass.
	Cancelled bool     `json:"cancelled,omitempty"`
	Mode      string   `json:"mode"` // netns or loopback
	Nodes     int      `json:"nodes"`
	Nemeses   []string `json:"nemeses"`
	Bug       string   `json:"bug,omitempty"`
	TLS       bool     `json:"tls"`
	Schedule  []string `json:"schedule"`
	Notes     []string `json:"notes,omitempty"`
}

// BuildBinary builds the chaos build of cmd/leasecluster into dir.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", fmt.Errorf("%w: cannot find the module root: %v", ErrBuild, err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin, err := filepath.Abs(filepath.Join(dir, "leasecluster"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "chaos", "-o", bin, "./cmd/leasecluster")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %v: %s", ErrBuild, err, msg)
	}
	return bin, nil
}

// Run starts a cluster, runs the workload and the nemesis, checks the
// history and writes summary.json, history.jsonl and report.html to
// opts.OutDir. The cluster (processes, namespaces, rules) is always torn
// down, also when ctx is cancelled. The error reports a run that could not
// be carried out; a run whose checks fail returns a Summary with OK false.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	opts.defaults()
	logf := func(format string, args ...any) {
		fmt.Fprintf(opts.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	if err := os.MkdirAll(opts.OutDir, 0o750); err != nil {
		return nil, err
	}
	if opts.Binary == "" {
		logf("building the chaos build of leasecluster")
		bin, err := BuildBinary(ctx, opts.OutDir)
		if err != nil {
			return nil, err
		}
		opts.Binary = bin
	}
	sum := &Summary{Seed: opts.Seed, Nodes: opts.Nodes, Bug: opts.Bug, TLS: opts.TLS, Mode: "loopback", Checkers: map[string]Verdict{}}
	netns := os.Geteuid() == 0 && !opts.Loopback
	if netns {
		sum.Mode = "netns"
		// Runs killed before their cleanup leave namespaces behind.
		if removed, err := CleanupStale(ctx); len(removed) > 0 || err != nil {
			logf("removed leftovers of earlier runs: %v (%v)", removed, err)
		}
	}
	nemeses := opts.Nemeses
	if !netns && slices.Contains(nemeses, NemesisPartition) {
		nemeses = slices.DeleteFunc(slices.Clone(nemeses), func(s string) bool { return s == NemesisPartition })
		sum.Notes = append(sum.Notes, "partitions are unsupported in loopback mode (run as root for network namespaces); skipped")
	}
	sum.Nemeses = nemeses
	steps := Schedule(opts.Seed, nemeses, opts.Duration, opts.Nodes, opts.Election, opts.TTL)
	for _, s := range steps {
		sum.Schedule = append(sum.Schedule, s.String())
	}
	var env []string
	if opts.Bug != "" {
		env = append(env, "LEASECLUSTER_CHAOS_BUG="+opts.Bug)
	}
	if slices.Contains(nemeses, NemesisSnapshot) {
		env = append(env, snapshotSettings) // nemesis_disk.go
	}
	logf("starting %d nodes (%s mode, TLS %s)", opts.Nodes, sum.Mode, onOff(opts.TLS))
	c, err := StartCluster(ctx, ClusterConfig{
		Binary: opts.Binary, Nodes: opts.Nodes, Dir: opts.OutDir, Netns: netns,
		Election: opts.Election, Heartbeat: opts.Election, Env: env, TLS: opts.TLS, Logf: logf,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			logf("cleanup: %v", cerr)
		}
	}()
	h := NewHistory()
	// The renewal observer records lock leases' renewals (the client's
	// KeepAlive sends them) with their exact send times.
	copts := []client.Option{client.WithRequestTimeout(2 * time.Second), client.WithRenewalObserver(renewalRecorder(h))}
	if cfg := c.WorkloadTLS(); cfg != nil {
		copts = append(copts, client.WithTLS(cfg))
	}
	cl, err := client.New(ctx, c.Endpoints(), copts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	w := newWorkload(WorkloadConfig{
		TTL: opts.TTL, Holders: opts.Holders, Lockers: 3, Readers: 2, Keys: []string{"lock/a", "lock/b"}, Seed: opts.Seed,
	}, h, cl, c.connections(), logf)
	pollCtx, stopPollers := context.WithCancel(ctx)
	defer stopPollers()
	wctx, stopWorkload := context.WithTimeout(ctx, opts.Duration)
	defer stopWorkload()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.run(wctx, pollCtx)
	}()
	logf("running the workload for %v with %d faults scheduled", opts.Duration, len(steps))
	(&nemesis{c: c, h: h, w: w, logf: logf}).run(wctx, steps)
	if err := c.HealAll(context.WithoutCancel(ctx)); err != nil {
		sum.Notes = append(sum.Notes, fmt.Sprintf("healing: %v", err))
	}
	healedAt := h.Now()
	wg.Wait()
	// The schedule may end before the workload: it stopped at wctx's deadline.
	dl, _ := wctx.Deadline()
	stopAt := min(h.At(dl), h.Now())
	logf("workload stopped; waiting for abandoned leases to be seen gone")
	w.pollers.Wait()
	return finish(ctx, sum, runEnd{opts: opts, h: h, w: w, c: c, stopAt: stopAt, healedAt: healedAt, logf: logf})
}

func (c *Cluster) connections() []*grpc.ClientConn {
	var out []*grpc.ClientConn
	for _, n := range c.Nodes {
		out = append(out, n.wconn)
	}
	return out
}

// checkConvergence waits for every replica to report the same applied
// index and state hash (rule 1) after the faults have healed.
func checkConvergence(ctx context.Context, c *Cluster) Verdict {
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		var idx []uint64
		hashes := map[string][]string{}
		for _, n := range c.Nodes {
			st, err := c.StatusWithHash(ctx, n)
			if err != nil {
				last = fmt.Sprintf("%s: %v", n.Name, err)
				idx = nil
				break
			}
			idx = append(idx, st.GetAppliedIndex())
			hashes[st.GetStateHash()] = append(hashes[st.GetStateHash()], n.Name)
		}
		if idx != nil {
			if len(hashes) == 1 && slices.Min(idx) == slices.Max(idx) {
				return Verdict{OK: true, Detail: fmt.Sprintf("%d replicas at applied index %d with equal state hashes", len(idx), idx[0])}
			}
			var parts []string
			for _, hsh := range sortedKeys(hashes) {
				parts = append(parts, fmt.Sprintf("%v=%.12s", hashes[hsh], hsh))
			}
			sort.Strings(parts)
			last = fmt.Sprintf("applied %v, hashes %s", idx, strings.Join(parts, " "))
		}
		if !sleep(ctx, 200*time.Millisecond) {
			break
		}
	}
	return Verdict{OK: false, Detail: "replicas did not converge within 30s: " + last}
}

func writeSummary(path string, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o640)
}

// Text is the short human summary printed on stdout.
func (s *Summary) Text() string {
	var b strings.Builder
	verdict := "PASS"
	if !s.OK {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s  seed=%d nodes=%d mode=%s tls=%s nemeses=%s ops=%d faults=%d", verdict, s.Seed, s.Nodes, s.Mode, onOff(s.TLS), strings.Join(s.Nemeses, ","), s.Ops, s.Faults)
	if s.Bug != "" {
		fmt.Fprintf(&b, " bug=%s", s.Bug)
	}
	fmt.Fprintf(&b, " availability=%.1f%%", 100*s.Availability)
	if s.Cancelled {
		b.WriteString(" CANCELLED")
	}
	b.WriteString("\n")
	for _, k := range sortedKeys(s.Checkers) {
		v := s.Checkers[k]
		mark := "ok  "
		switch {
		case v.Unknown:
			mark = "UNKN"
		case v.Thin:
			mark = "THIN"
		case !v.OK:
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %-24s %s\n", mark, k, v.Detail)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
