package chaos

import (
	"testing"
	"time"
)

const sec = int64(time.Second)

// testCfg judges hand-built histories, which are far below the run
// minimums (TestEmptyHistoryIsTooThin covers those).
var testCfg = CheckConfig{Extend: time.Second, Election: time.Second, LinTimeout: 10 * time.Second, Minimums: map[string]int{}}

// cleanHistory: a lease granted, renewed, abandoned and seen gone after its
// deadline; a lock taken, used within its window, released; a second holder
// taking it afterwards with a higher token.
func cleanHistory() []Op {
	return []Op{
		{Process: 0, Kind: OpGrant, Status: StatusOK, Lease: 1, TTLms: 3000, ReqTTLms: 3000, Invoke: 0, Complete: sec / 10},
		{Process: 0, Kind: OpRenew, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000, Invoke: 1 * sec, Complete: 1*sec + sec/10},
		{Process: 1, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000, RemainingMs: 2500, Invoke: 2 * sec, Complete: 2*sec + sec/10},
		{Process: 1, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: false, Invoke: 4*sec + sec/2, Complete: 4*sec + sec/2 + sec/10},
		{Process: 2, Kind: OpAttach, Status: StatusOK, Lease: 2, Key: "k", Holder: 2, Rev: 10, Invoke: 0, Complete: sec / 10},
		{Process: 2, Kind: OpWrite, Status: StatusOK, Lease: 2, Key: "k", Rev: 10, Deadline: 3 * sec, Accepted: true, Invoke: sec, Complete: sec},
		{Process: 2, Kind: OpDetach, Status: StatusOK, Lease: 2, Key: "k", Invoke: 2 * sec, Complete: 2*sec + sec/10},
		{Process: 3, Kind: OpAttach, Status: StatusOK, Lease: 3, Key: "k", Holder: 3, Rev: 12, Invoke: 2*sec + sec/2, Complete: 2*sec + sec/2 + sec/10},
		{Process: 3, Kind: OpWrite, Status: StatusOK, Lease: 3, Key: "k", Rev: 12, Deadline: 6 * sec, Accepted: true, Invoke: 3 * sec, Complete: 3 * sec},
		{Process: 4, Kind: OpGet, Status: StatusOK, Key: "k", Found: true, Holder: 3, Rev: 12, Invoke: 3 * sec, Complete: 3*sec + sec/10},
	}
}

func number(ops []Op) []Op {
	for i := range ops {
		ops[i].Index = i
	}
	return ops
}

func TestCheckCleanHistoryPasses(t *testing.T) {
	for name, v := range Check(number(cleanHistory()), nil, testCfg) {
		if !v.OK {
			t.Errorf("%s failed on a clean history: %s", name, v.Detail)
		}
	}
}

func TestCheckersCatchViolations(t *testing.T) {
	tests := []struct {
		name  string
		check string
		edit  func([]Op) []Op
	}{
		{"early expiry", CheckNoEarlyExpiry, func(h []Op) []Op {
			// Seen gone 2.5 s after a renewal sent at 1 s with TTL 3 s.
			h[3].Invoke, h[3].Complete = 3*sec+sec/3, 3*sec+sec/2
			return h
		}},
		{"overlapping holders", CheckNoOverlap, func(h []Op) []Op {
			// The first holder keeps writing after the second acquired.
			return append(h, Op{Process: 2, Kind: OpWrite, Status: StatusOK, Lease: 2, Key: "k", Rev: 10, Deadline: 4 * sec, Invoke: 2*sec + 8*sec/10, Complete: 2*sec + 8*sec/10})
		}},
		{"stale fenced write", CheckFencing, func(h []Op) []Op {
			return append(h, Op{Process: 2, Kind: OpWrite, Status: StatusOK, Lease: 2, Key: "k", Rev: 10, Accepted: true, Invoke: 4 * sec, Complete: 4 * sec})
		}},
		{"token not increasing", CheckFencing, func(h []Op) []Op {
			h[7].Rev = 9
			h[8].Rev, h[9].Rev = 9, 9
			return h
		}},
		{"resurrection", CheckResurrection, func(h []Op) []Op {
			return append(h, Op{Process: 1, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000, RemainingMs: 1000, Invoke: 5 * sec, Complete: 5*sec + sec/10})
		}},
		{"resurrection after revoke", CheckLinearizable, func(h []Op) []Op {
			return append(h,
				Op{Process: 5, Kind: OpGrant, Status: StatusOK, Lease: 9, TTLms: 3000, Invoke: 0, Complete: sec / 10},
				Op{Process: 5, Kind: OpRevoke, Status: StatusOK, Lease: 9, Found: true, Invoke: sec / 2, Complete: sec},
				Op{Process: 5, Kind: OpTTL, Status: StatusOK, Lease: 9, Found: true, TTLms: 3000, Invoke: 2 * sec, Complete: 2*sec + 1})
		}},
		{"stale item read", CheckLinearizable, func(h []Op) []Op {
			return append(h, Op{Process: 4, Kind: OpGet, Status: StatusOK, Key: "k", Found: true, Holder: 2, Rev: 10, Invoke: 3*sec + sec/2, Complete: 3*sec + sec/2 + 1})
		}},
		{"duplicate lease ID", CheckUniqueIDs, func(h []Op) []Op {
			return append(h, Op{Process: 5, Kind: OpGrant, Status: StatusOK, Lease: 1, TTLms: 3000, Invoke: 5 * sec, Complete: 5*sec + 1})
		}},
		{"TTL shortened", CheckTTLSanity, func(h []Op) []Op {
			h[0].TTLms = 2000
			return h
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := number(tt.edit(cleanHistory()))
			v := Check(h, nil, testCfg)
			if v[tt.check].OK {
				t.Fatalf("%s passed a history with %s: %s", tt.check, tt.name, v[tt.check].Detail)
			}
			t.Logf("%s: %s", tt.check, v[tt.check].Detail)
		})
	}
}

// Hole: a lease still alive 29 s after its last renewal only warned.
func TestBoundedExpiryFails(t *testing.T) {
	h := cleanHistory()[:2]
	h = append(h, Op{Process: 1, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000, Invoke: 30 * sec, Complete: 30*sec + 1})
	v := Check(number(h), nil, testCfg)[CheckBoundedExpiry]
	if !v.Caught() || v.Judged != 1 {
		t.Fatalf("a lease alive 29 s after its last renewal: %+v", v)
	}
	t.Log(v.Detail)
	// Within the bound (2 x 3 s + 1 s extend + 2 s failover after the
	// renewal completed at 1.1 s): no violation.
	h[2].Invoke, h[2].Complete = 10*sec, 10*sec+1
	if v := Check(number(h), nil, testCfg)[CheckBoundedExpiry]; !v.OK {
		t.Fatalf("alive 8.9 s after its last renewal, inside the 9 s bound: %+v", v)
	}
}
