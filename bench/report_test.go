package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scaleOnlyLC is the figures of a run of the scale phase (and so the memory
// phase) on leasecluster alone: every kept-alive lease renewed after 1.5 s,
// none lost, the longest renewal 19 ms.
func scaleOnlyLC() *Results {
	r := &Results{Settings: settings{ScaleLeases: 1_000_000, TableSizes: []int{1_000_000}, ExpiryLeases: 100_000,
		Phases: nameSet{phaseScale}, Systems: nameSet{sysLC}}}
	ts := TableSize{Leases: 1_000_000}
	ts.Memory.LC = MemoryResult{Leases: 1_000_000, PerHundredKMiB: 45.7}
	ts.Scale.LC = FailoverResult{KeptAlive: 1000, BackgroundLeases: 1_000_000, ResumeFirstMs: 1448,
		ResumeAllMs: 1498, ProbeFirstOKMs: 1327, ProbeMaxStallMs: 19}
	r.Sizes = []TableSize{ts}
	return r
}

func targetsByName(r *Results) map[string]Target {
	m := map[string]Target{}
	for _, t := range r.Targets {
		m[t.Name] = t
	}
	return m
}

// A partial run judges only the targets it measured: the others read "not
// run", neither met nor missed, and their phases' tables are left out
// instead of being printed as zeros, as are etcd's figures when etcd did
// not run.
func TestPartialRunMarksUnmeasuredTargetsNotRun(t *testing.T) {
	r := scaleOnlyLC()
	r.evaluate()
	if len(r.Targets) != 15 {
		t.Fatalf("%d targets, want all 15", len(r.Targets))
	}
	judged := map[string]bool{
		"scale (1000000 leases): no kept-alive lease lost":             true,
		"scale (1000000 leases): renewals resume":                      true,
		"scale (1000000 leases): longest renewal stall during Promote": true,
	}
	for _, tg := range r.Targets {
		switch {
		case judged[tg.Name] && (tg.NotRun || !tg.Met):
			t.Errorf("%q: %s (%s), want met", tg.Name, tg.status(), tg.Got)
		case !judged[tg.Name] && (!tg.NotRun || tg.Met || tg.status() != "not run"):
			t.Errorf("%q: %s (met %v), want not run", tg.Name, tg.status(), tg.Met)
		}
	}
	var out strings.Builder
	r.table(&out)
	md := out.String()
	for _, absent := range []string{"## Throughput", "## CPU per operation", "SIGKILL of the leader", "## Expiry", "MISSED", "(etcd"} {
		if strings.Contains(md, absent) {
			t.Errorf("table has %q:\n%s", absent, md)
		}
	}
	for _, present := range []string{"## Leader memory", "## Failover with 1000000 leases", "| not run |", "| 19.0 ms | met |"} {
		if !strings.Contains(md, present) {
			t.Errorf("table lacks %q:\n%s", present, md)
		}
	}
}

// A target comparing with etcd is not run without etcd, even when its phase
// ran; leasecluster's own figures from that phase are still judged.
func TestTargetNeedingEtcdNotRunWithoutIt(t *testing.T) {
	r := &Results{Settings: settings{Phases: nameSet{phaseFailover}, Systems: nameSet{sysLC}, TableSizes: []int{1_000_000}}}
	r.Failover.LC = FailoverResult{KeptAlive: 1000, ResumeAllMs: 1400, Lost: 3, IdleTTLSec: 60, IdleBeforeMs: 25000, IdleJumpMs: 900}
	r.evaluate()
	got := targetsByName(r)
	for name, want := range map[string]string{
		"failover: renewals resume":                            "not run",
		"failover: no lease lost":                              "MISSED",
		"failover: idle lease keeps its remaining TTL":         "met",
		"memory (1000000 leases): leader RSS growth per lease": "not run",
	} {
		if s := got[name].status(); s != want {
			t.Errorf("%q: %s, want %s", name, s, want)
		}
	}
}

// A full run judges every target, on its figures.
func TestFullRunJudgesEveryTarget(t *testing.T) {
	r := scaleOnlyLC()
	r.Settings.Phases, r.Settings.Systems = allPhases, allSystems
	r.evaluate()
	for _, tg := range r.Targets {
		if tg.NotRun {
			t.Errorf("%q not run in a full run", tg.Name)
		}
	}
	got := targetsByName(r)
	if tg := got["scale (1000000 leases): renewals resume"]; !tg.Met || tg.Got != "1498 ms for all (etcd 0 ms)" {
		t.Errorf("scale resume: %s (%s), want met with etcd's figure beside", tg.status(), tg.Got)
	}
	// No throughput figures: missed, not passed over.
	if tg := got[wGrant64+" throughput"]; tg.status() != "MISSED" {
		t.Errorf("grant c=64 with no figures: %s, want MISSED", tg.status())
	}
}

// A -tls run says so and keeps its own files: latest.md stays the
// plaintext comparison.
func TestTLSRunWritesItsOwnFiles(t *testing.T) {
	dir := t.TempDir()
	r := scaleOnlyLC()
	r.Settings.Phases, r.Settings.Systems, r.Settings.TLS, r.Settings.Quick = allPhases, allSystems, true, true
	r.evaluate()
	var out strings.Builder
	if err := r.write(&out, dir); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "mutual TLS") {
		t.Errorf("table does not say TLS:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "latest.md")); !os.IsNotExist(err) {
		t.Errorf("latest.md written by a TLS run (%v)", err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "latest-tls.md"))
	if err != nil || !strings.Contains(string(md), "go run . -quick -tls") {
		t.Errorf("latest-tls.md: %v\n%s", err, md)
	}
	js, _ := filepath.Glob(filepath.Join(dir, "*-quick-tls.json"))
	if len(js) != 1 {
		t.Fatalf("JSON files %v, want one *-quick-tls.json", js)
	}
	if b, _ := os.ReadFile(js[0]); !strings.Contains(string(b), `"tls": true`) {
		t.Errorf("%s lacks \"tls\": true", js[0])
	}
}
