package lessor

import (
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// configs are nodes started with different flags. The replicated paths must
// treat them all alike.
var configs = map[string]Config{
	"defaults":       {},
	"min-ttl 5s":     {MinTTL: 5 * time.Second, MaxTTL: time.Hour},
	"min-ttl 1ms":    {MinTTL: time.Millisecond, MaxTTL: TTLCeiling},
	"revoke-rate 1":  {RevokeRate: 1, BatchSize: 1},
	"sub-ms min-ttl": {MinTTL: 2500*time.Millisecond + 700*time.Microsecond},
}

// Grant applies a logged TTL as it is, whatever the node's MinTTL and
// MaxTTL: only the format's bound, 1..TTLCeiling, is checked. Rule 4's
// raising to the minimum is the leader's, before it proposes.
func TestGrantTakesLoggedTTL(t *testing.T) {
	ceiling := TTLCeiling.Milliseconds()
	for name, cfg := range configs {
		for _, primary := range []bool{false, true} {
			le := newTest(t, cfg)
			if primary {
				le.Promote(time.Second)
			}
			tests := []struct {
				id      LeaseID
				ttl     int64
				wantErr error
			}{
				{1, 1, nil},
				{2, 1499, nil},      // below the default and a 5 s minimum
				{3, 3_600_001, nil}, // above a 1 h maximum
				{4, (40 * 24 * time.Hour).Milliseconds(), nil}, // above the default maximum
				{5, ceiling, nil},
				{6, ceiling + 1, ErrInvalidTTL},
				{7, math.MaxInt64, ErrInvalidTTL},
				{8, 0, ErrInvalidTTL},
				{9, -5, ErrInvalidTTL},
				{0, 2000, ErrInvalidID},
				{-1, 2000, ErrInvalidID},
				{1, 2000, ErrLeaseExists},
			}
			for _, tt := range tests {
				l, err := le.Grant(tt.id, tt.ttl)
				if !errors.Is(err, tt.wantErr) || (err != nil) != (l == nil) {
					t.Errorf("%s, primary %v: Grant(%d, %d) = %v, %v, want error %v", name, primary, tt.id, tt.ttl, l, err, tt.wantErr)
					continue
				}
				if err == nil && (l.TTL() != tt.ttl || le.Lookup(tt.id) != l) {
					t.Errorf("%s, primary %v: Grant(%d, %d) holds TTL %d", name, primary, tt.id, tt.ttl, l.TTL())
				}
			}
			if got := le.Lookup(1).TTL(); got != 1 {
				t.Errorf("%s: the refused duplicate changed lease 1's TTL to %d", name, got)
			}
		}
	}
}

// Recover restores a snapshot written by a node with other flags: TTLs
// below this node's minimum or above its maximum come back as they were.
func TestRecoverTakesLoggedTTL(t *testing.T) {
	ceiling := TTLCeiling.Milliseconds()
	want := []LeaseState{
		{ID: 1, TTL: 1},
		{ID: 2, TTL: 7_200_000, Keys: []string{"a"}},
		{ID: 3, TTL: ceiling, Remaining: ceiling, Gen: 2},
	}
	for name, cfg := range configs {
		le := newTest(t, cfg)
		if err := le.Recover(want, nil); err != nil {
			t.Fatalf("%s: Recover = %v", name, err)
		}
		if got := le.State(); !equalStates(got, want) {
			t.Fatalf("%s: recovered %+v, want %+v", name, got, want)
		}
	}
}

// The ceiling keeps every nanosecond sum the lessor forms far from
// overflowing: a primary holding leases of the ceiling's TTL, or a
// checkpointed remainder of it, reports them as due in the future.
func TestTTLCeilingDoesNotOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const extend = time.Second
		le := newTest(t, Config{MaxTTL: TTLCeiling})
		ceiling := TTLCeiling.Milliseconds()
		mustGrant(t, le, 1, ceiling)
		mustGrant(t, le, 2, ceiling)
		le.Checkpoint([]Checkpoint{{ID: 2, Remaining: ceiling}})
		le.Promote(extend)
		mustGrant(t, le, 3, ceiling) // on the primary
		synctest.Wait()
		for id, want := range map[LeaseID]time.Duration{1: TTLCeiling + extend, 2: TTLCeiling + extend, 3: TTLCeiling} {
			if got := le.Lookup(id).Remaining(); got != want {
				t.Errorf("lease %d: Remaining() = %v, want %v", id, got, want)
			}
			if le.Expired(id) {
				t.Errorf("lease %d expired at once", id)
			}
		}
		time.Sleep(time.Hour)
		if got := le.Lookup(3).Remaining(); got != TTLCeiling-time.Hour {
			t.Errorf("after an hour, lease 3 has %v", got)
		}
	})
}
