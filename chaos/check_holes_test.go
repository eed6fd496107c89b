package chaos

import (
	"strings"
	"testing"
	"time"
)

// The holes issue 23 found by calling Check on hand-built histories, each
// with the history that slipped through.

// An empty history passed every checker; now each history checker fails as
// too thin, naming itself.
func TestEmptyHistoryIsTooThin(t *testing.T) {
	vs := Check(nil, nil, CheckConfig{Extend: time.Second, Election: time.Second})
	for name, min := range DefaultMinimums {
		v, ok := vs[name]
		if !ok {
			t.Errorf("%s: no verdict", name)
			continue
		}
		if min > 0 && (!v.Thin || v.OK || v.Caught() || !strings.Contains(v.Detail, name)) {
			t.Errorf("%s on an empty history: %+v, want too thin, naming the checker", name, v)
		}
	}
	// A clean but short history, as a 3 s run gives: still too thin.
	vs = Check(number(cleanHistory()), nil, CheckConfig{Extend: time.Second, Election: time.Second})
	if v := vs[CheckNoEarlyExpiry]; !v.Thin || v.Judged != 1 {
		t.Errorf("no-early-expiry judged one observation against a minimum of %d: %+v", DefaultMinimums[CheckNoEarlyExpiry], v)
	}
}

// revokeThenEarlyRead: lease 5 renewed at 1 s (TTL 3 s: a client relies on
// it until 3.939 s), a revoke at 2 s answered as given, and a TimeToLive
// answering NOT_FOUND at 2.539 s, 1.4 s before the deadline.
func revokeThenEarlyRead(revoke Op) []Op {
	revoke.Process, revoke.Kind, revoke.Lease = 6, OpRevoke, 5
	revoke.Invoke, revoke.Complete = 2*sec, 2*sec+sec/10
	return number([]Op{
		{Process: 5, Kind: OpGrant, Status: StatusOK, Lease: 5, TTLms: 3000, ReqTTLms: 3000, Invoke: 0, Complete: sec / 10},
		{Process: 5, Kind: OpRenew, Status: StatusOK, Lease: 5, Found: true, TTLms: 3000, Invoke: sec, Complete: sec + sec/10},
		revoke,
		{Process: 7, Kind: OpTTL, Status: StatusOK, Lease: 5, Invoke: 2*sec + sec/2, Complete: 2*sec + 539*sec/1000},
	})
}

// Every revoke exempted later observations, even one that failed or found
// nothing to revoke.
func TestRevokeExemptsOnlyIfItMayHaveDeleted(t *testing.T) {
	for _, tt := range []struct {
		name   string
		revoke Op
		caught bool
	}{
		{"failed revoke", Op{Status: StatusFail, Err: "INVALID_ARGUMENT"}, true},
		{"revoke answering NOT_FOUND", Op{Status: StatusOK, Found: false}, true},
		{"successful revoke", Op{Status: StatusOK, Found: true}, false},
		{"revoke of unknown outcome", Op{Status: StatusInfo, Err: "DEADLINE_EXCEEDED"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := Check(revokeThenEarlyRead(tt.revoke), nil, testCfg)[CheckNoEarlyExpiry]
			if v.Caught() != tt.caught {
				t.Fatalf("caught %v, want %v: %+v", v.Caught(), tt.caught, v)
			}
			if tt.caught && !strings.Contains(v.Detail, "1.4s early") {
				t.Fatalf("detail does not say how early: %s", v.Detail)
			}
		})
	}
}

// A lock lease's renewals (recorded from the client's renewal observer)
// are claims like any other: its key taken before the deadline they give
// is caught, though the grant's deadline had passed.
func TestLockLeaseRenewalsAreClaims(t *testing.T) {
	h := number([]Op{
		{Process: 2, Kind: OpGrant, Status: StatusOK, Lease: 8, TTLms: 3000, ReqTTLms: 3000, Invoke: 0, Complete: sec / 10},
		{Process: 2, Kind: OpAttach, Status: StatusOK, Lease: 8, Key: "k2", Holder: 8, Rev: 4, Invoke: sec / 10, Complete: sec / 5},
		{Process: ProcessKeepAlive, Kind: OpRenew, Status: StatusOK, Lease: 8, Found: true, TTLms: 3000, Invoke: 2 * sec, Complete: 2*sec + sec/20},
		{Process: 4, Kind: OpGet, Status: StatusOK, Key: "k2", Invoke: 4 * sec, Complete: 4*sec + sec/10},
	})
	if v := Check(h, nil, testCfg)[CheckNoEarlyExpiry]; !v.Caught() {
		t.Fatalf("key seen free 0.8 s before the renewal's deadline: %+v", v)
	}
	h[2].Status, h[2].Found = StatusInfo, false // a renewal of unknown outcome vouches for nothing
	if v := Check(h, nil, testCfg)[CheckNoEarlyExpiry]; !v.OK {
		t.Fatalf("only the grant's claim (until 2.939 s) remains: %+v", v)
	}
}

// A porcupine timeout is neither a pass nor a caught bug.
func TestPorcupineTimeoutIsUnknown(t *testing.T) {
	// Forty concurrent reads of a live lease, then a read that sees it gone
	// and one that sees it back: porcupine has to try every order of the
	// forty before it can call the history illegal.
	h := []Op{{Process: 0, Kind: OpGrant, Status: StatusOK, Lease: 1, TTLms: 3000, Invoke: 0, Complete: sec / 10}}
	for i := range 40 {
		h = append(h, Op{Process: 1 + i, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000,
			Invoke: sec/5 + int64(i), Complete: 10*sec + int64(i)})
	}
	h = append(h,
		Op{Process: 50, Kind: OpTTL, Status: StatusOK, Lease: 1, Invoke: 11 * sec, Complete: 11*sec + 1},
		Op{Process: 50, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000, Invoke: 12 * sec, Complete: 12*sec + 1})
	cfg := testCfg
	cfg.LinTimeout = 200 * time.Millisecond
	v := Check(number(h), nil, cfg)[CheckLinearizable]
	if v.OK || !v.Unknown || v.Caught() || !strings.Contains(v.Detail, "unknown") {
		t.Fatalf("porcupine timeout: %+v, want unknown", v)
	}
}

// Availability counts only operations clear of fault windows and their
// recovery, and fails below the floor.
func TestAvailability(t *testing.T) {
	var h []Op
	for i := range int64(20) {
		st := StatusOK
		if i%5 == 0 {
			st = StatusFail // 4 of 20 outside the fault: 80%
		}
		h = append(h, Op{Process: 1, Kind: OpGet, Key: "k", Status: st, Invoke: i * sec, Complete: i*sec + sec/10})
	}
	// Operations inside the fault (10.5-12 s, recovery until 14 s) do not count.
	faults := []Fault{{Kind: NemesisKill, Start: 10*sec + sec/2, End: 12 * sec}}
	for i := range h {
		if h[i].Invoke >= 10*sec && h[i].Invoke <= 14*sec {
			h[i].Status = StatusInfo
		}
	}
	// Outside: 0-10 s and 15-19 s, 16 operations; 0, 5, 10 and 15 failed.
	share, n := Availability(h, faults, testCfg)
	if n != 16 || share != 12.0/16 {
		t.Fatalf("availability %v of %d, want 12/16 of 16", share, n)
	}
	if v := Check(number(h), faults, testCfg)[CheckAvailability]; !v.Caught() || v.Judged != 16 {
		t.Fatalf("75%% is below the floor: %+v", v)
	}
	cfg := testCfg
	cfg.AvailabilityFloor = 0.7
	if v := Check(number(h), faults, cfg)[CheckAvailability]; !v.OK {
		t.Fatalf("75%% with a 70%% floor: %+v", v)
	}
}

// Bounded expiry allows the largest single fault, not the sum of every
// fault overlapping the wait: frequent handovers and a long clock fault
// (which stops no leader) do not stretch the bound past an immortal lease.
func TestBoundedExpiryPerFaultAllowance(t *testing.T) {
	h := number(append(cleanHistory()[:2],
		Op{Process: 1, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000, Invoke: 14 * sec, Complete: 14*sec + 1}))
	faults := []Fault{{Kind: NemesisClock, Start: 2 * sec, End: 12 * sec}}
	for i := range int64(5) {
		faults = append(faults, Fault{Kind: NemesisTransfer, Start: 2*sec + 2*i*sec, End: 2*sec + 2*i*sec + sec/10})
	}
	// Renewal completed at 1.1 s; bound 2 x 3 s + 1 s + 2 x 1 s + (1 s + 1 s) = 11 s.
	if v := Check(h, faults, testCfg)[CheckBoundedExpiry]; !v.Caught() {
		t.Fatalf("alive 12.9 s after its last renewal with only handovers and a clock fault: %+v", v)
	}
	// A 4 s outage (a kill) in the wait: its allowance covers it.
	faults = append(faults, Fault{Kind: NemesisKill, Start: 3 * sec, End: 7 * sec})
	if v := Check(h, faults, testCfg)[CheckBoundedExpiry]; !v.OK {
		t.Fatalf("alive 12.9 s after its last renewal, bound 15 s with a 4 s outage: %+v", v)
	}
}

// Outages one after another add up (a new leader after each counts the
// lease's remainder anew; after a full restart, from the replay), while
// outages that overlap count once.
func TestBoundedExpirySequentialOutages(t *testing.T) {
	h := number(append(cleanHistory()[:2],
		Op{Process: 1, Kind: OpTTL, Status: StatusOK, Lease: 1, Found: true, TTLms: 3000, Invoke: 17 * sec, Complete: 17*sec + 1}))
	// Last renewal attempt at 1.1 s. Two 2.5 s outages one after the other:
	// bound 1.1 + 2 x 3 + 1 + 2 x 1 + (2.5 + 2) + (2.5 + 2) = 19.1 s: alive at 17 s is fine.
	seq := []Fault{{Kind: NemesisPartition, Start: 2 * sec, End: 4500 * sec / 1000}, {Kind: NemesisKill, Start: 6 * sec, End: 8500 * sec / 1000}}
	if v := Check(h, seq, testCfg)[CheckBoundedExpiry]; !v.OK {
		t.Fatalf("two outages one after another: %+v", v)
	}
	// The same two outages overlapping are one 4 s outage: bound
	// 1.1 + 9 + (4 + 2) = 16.1 s, so alive at 17 s is caught.
	overlap := []Fault{{Kind: NemesisPartition, Start: 2 * sec, End: 4500 * sec / 1000}, {Kind: NemesisKill, Start: 3500 * sec / 1000, End: 6 * sec}}
	if v := Check(h, overlap, testCfg)[CheckBoundedExpiry]; !v.Caught() {
		t.Fatalf("alive 15.9 s after its last renewal with one merged 4 s outage (bound 15 s): %+v", v)
	}
}
