//go:build chaos

package chaos

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// biteCase runs the harness against a deliberately broken server (selected
// in the node's chaos build by LEASECLUSTER_CHAOS_BUG) and expects at least
// one of the named checkers to fail; the unbroken server must pass the same
// seed and schedule.
type biteCase struct {
	bug      string
	nemeses  []string
	seed     int64
	duration time.Duration
	want     []string // at least one of these checkers must fail
	netns    bool     // needs partitions, hence root
	holders  int      // lease holders; 0 is the default
}

var biteCases = []biteCase{
	// Leases expire after TTL/1.15: an abandoned lease disappears before
	// the deadline of its last renewal, no faults needed.
	{bug: "early-expiry", seed: 1, duration: 20 * time.Second, want: []string{CheckNoEarlyExpiry}},
	// A revoke deleted on the leader only: after a leader change the lease
	// is back, and the replicas' state hashes differ.
	{bug: "leader-only-revoke", nemeses: []string{NemesisKill}, seed: 3, duration: 20 * time.Second,
		want: []string{CheckResurrection, CheckLinearizable, CheckConvergence}},
	// Renewals acknowledged without VerifyLeader: seed 13 schedules twice a
	// leader whose disk stalls while it is cut off, so raft's own leader lease
	// cannot step it down and it keeps acknowledging renewals that the new
	// leader never sees.
	{bug: "skip-verify", nemeses: []string{NemesisFsync}, seed: 13, duration: 40 * time.Second,
		want: []string{CheckNoEarlyExpiry, CheckNoOverlap, CheckFencing}, netns: true},
	// The lessor measures on the wall clock: seed 5 steps the leader's
	// clock by +64 s and then -105 s.
	{bug: "wall-clock", nemeses: []string{NemesisClock}, seed: 5, duration: 30 * time.Second,
		want: []string{CheckNoEarlyExpiry}},
	// Promote without the extension: leadership handovers every 1.6-2.6 s
	// while the followers' lessor clocks run 15-20% fast (beyond the 2%
	// margin, and only while following), so a new leader expires the
	// leases whose checkpointed remainders it inherited up to a few
	// hundred ms early; 24 holders renewing every TTL/4 give many leases
	// abandoned close to a handover. The extension absorbs that drift.
	{bug: "no-extend", nemeses: []string{NemesisTransfer}, seed: 1, duration: 40 * time.Second,
		want: []string{CheckNoEarlyExpiry}, holders: 24},
}

// TestBite proves that the checkers catch real bugs. It takes several
// minutes (two runs per case); LEASECHAOS_BITE=bug,... selects cases.
//
//	go test -tags chaos ./chaos/ -run Bite -v -timeout 20m
func TestBite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real clusters for minutes")
	}
	// Outputs stay for inspection (summary.json, history.jsonl, report.html,
	// node logs); each run replaces its own directory.
	dir := filepath.Join(os.TempDir(), "leasechaos-bite")
	ctx := context.Background()
	bin, err := BuildBinary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	only := strings.Split(os.Getenv("LEASECHAOS_BITE"), ",")
	for _, tc := range biteCases {
		t.Run(tc.bug, func(t *testing.T) {
			if only[0] != "" && !slices.Contains(only, tc.bug) {
				t.Skip("not selected by LEASECHAOS_BITE")
			}
			if tc.netns && os.Geteuid() != 0 {
				t.Skip("needs partitions: run as root")
			}
			run := func(bug string) *Summary {
				t.Helper()
				name := bug
				if name == "" {
					name = "unbroken"
				}
				out := filepath.Join(dir, tc.bug, name)
				os.RemoveAll(out)
				sum, err := Run(ctx, Options{
					Binary: bin, Nodes: 3, Duration: tc.duration, Nemeses: tc.nemeses,
					Seed: tc.seed, OutDir: out, Bug: bug, Holders: tc.holders,
				})
				if err != nil {
					t.Fatalf("%s run: %v", name, err)
				}
				t.Logf("%s (%s):\n%s", name, out, sum.Text())
				return sum
			}
			broken := run(tc.bug)
			caught := false
			for _, c := range tc.want {
				caught = caught || !broken.Checkers[c].OK
			}
			if !caught {
				t.Errorf("bug %s: none of %v failed", tc.bug, tc.want)
			}
			if clean := run(""); !clean.OK {
				t.Errorf("the unbroken server failed the schedule that caught %s", tc.bug)
			}
		})
	}
}
