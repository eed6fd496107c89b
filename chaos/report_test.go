package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A cancelled run (SIGINT) still writes its history and a summary that
// says so and does not pass.
func TestCancelledRunWritesHistoryAndSummary(t *testing.T) {
	dir := t.TempDir()
	h := NewHistory()
	for _, op := range cleanHistory() {
		h.Add(op)
	}
	fid := h.StartFault(NemesisKill, "one", []string{"n1"})
	h.EndFault(fid)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	opts := Options{OutDir: dir, TTL: 3 * time.Second, Election: time.Second}
	sum := &Summary{Checkers: map[string]Verdict{}}
	got, err := finish(ctx, sum, runEnd{opts: opts, h: h, logf: t.Logf})
	if !errors.Is(err, context.Canceled) || got != sum {
		t.Fatalf("finish = %v, %v; want the summary and context.Canceled", got, err)
	}
	ops, faults, err := ReadJSONL(filepath.Join(dir, "history.jsonl"))
	if err != nil || len(ops) != len(cleanHistory()) || len(faults) != 1 {
		t.Fatalf("history: %d ops, %d faults, %v", len(ops), len(faults), err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.OK || !s.Cancelled || s.Ops != len(ops) || len(s.Checkers) == 0 {
		t.Fatalf("summary %+v: want not OK, cancelled, %d ops, verdicts", s, len(ops))
	}
	if _, ok := s.Checkers[CheckConvergence]; ok {
		t.Fatal("convergence judged on a cancelled run")
	}
}
