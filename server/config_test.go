package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

func TestParseInitialCluster(t *testing.T) {
	peers, err := ParseInitialCluster("n1=127.0.0.1:7001, n2=127.0.0.1:7002")
	if err != nil || len(peers) != 2 || peers[1] != (Peer{"n2", "127.0.0.1:7002"}) {
		t.Fatalf("got %v %v", peers, err)
	}
	if peers, err := ParseInitialCluster(""); err != nil || peers != nil {
		t.Fatalf("empty: %v %v", peers, err)
	}
	for _, bad := range []string{"n1", "=127.0.0.1:1", "n1=", "n1=nohostport", "n1=a:1,n1=b:2"} {
		if _, err := ParseInitialCluster(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Rule 4: the minimum TTL exceeds an election; Promote's extension is at
// least one election timeout.
func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "n1", DataDir: "/tmp/x", GRPCAddr: "127.0.0.1:7001"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	d := ok.withDefaults()
	if d.MinTTL != 1500*time.Millisecond || d.Extend != time.Second || d.AdvertiseAddr != "127.0.0.1:7001" || d.RenewLease != 200*time.Millisecond {
		t.Fatalf("defaults: min TTL %v extend %v advertise %q renew lease %v", d.MinTTL, d.Extend, d.AdvertiseAddr, d.RenewLease)
	}
	// Rule 2: the next leader's extension must cover the renewal lease with
	// room to spare; half of it at most.
	half := ok
	half.RenewLease = d.Extend / 2
	if err := half.Validate(); err != nil {
		t.Fatalf("renew lease of half the extension: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"no name":           func(c *Config) { c.Name = "" },
		"no data dir":       func(c *Config) { c.DataDir = "" },
		"bad grpc addr":     func(c *Config) { c.GRPCAddr = "nope" },
		"bad http addr":     func(c *Config) { c.HTTPAddr = "nope" },
		"short extend":      func(c *Config) { c.Extend = 500 * time.Millisecond },
		"short min TTL":     func(c *Config) { c.MinTTL = time.Second },
		"long renew lease":  func(c *Config) { c.RenewLease = 501 * time.Millisecond },
		"max below min":     func(c *Config) { c.MaxTTL = time.Second },
		"max above ceiling": func(c *Config) { c.MaxTTL = lessor.TTLCeiling + time.Millisecond },
		"negative rate":     func(c *Config) { c.RevokeRate = -1 },
		"incomplete peer":   func(c *Config) { c.InitialCluster = []Peer{{Name: "n1"}} },
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// --max-ttl may reach the replicated format's ceiling, not pass it.
	at := ok
	at.MaxTTL = lessor.TTLCeiling
	if err := at.Validate(); err != nil {
		t.Fatalf("max TTL at the ceiling: %v", err)
	}
	at.MaxTTL += time.Millisecond
	if err := at.Validate(); err == nil || !strings.Contains(err.Error(), "max TTL") || !strings.Contains(err.Error(), "lessor.TTLCeiling") {
		t.Fatalf("max TTL above the ceiling: %v", err)
	}
}

// Errors map to gRPC codes in one place; a follower's answer carries a hint.
func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{lessor.ErrLeaseNotFound, codes.NotFound},
		{lessor.ErrLeaseExpired, codes.NotFound},
		{fmt.Errorf("x: %w", lessor.ErrItemNotFound), codes.NotFound},
		{lessor.ErrLeaseExists, codes.AlreadyExists},
		{lessor.ErrItemHeld, codes.FailedPrecondition},
		{lessor.ErrInvalidTTL, codes.InvalidArgument},
		{fsm.ErrKeyInvalid, codes.InvalidArgument},
		{fsm.ErrValueTooLarge, codes.InvalidArgument},
		{ErrInvalidArgument, codes.InvalidArgument},
		{ErrOutcomeUnknown, codes.Unavailable},
		{ErrStopped, codes.Unavailable},
		{lessor.ErrResetRequired, codes.Unavailable},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("something else"), codes.Unknown},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.code {
			t.Errorf("%v: code %v, want %v", tc.err, got, tc.code)
		}
	}
	st := status.Convert(toStatus(&NotLeaderError{LeaderID: "n2", LeaderAddr: "127.0.0.1:7002"}))
	if st.Code() != codes.Unavailable || len(st.Details()) != 1 {
		t.Fatalf("not leader: %v %v", st.Code(), st.Details())
	}
	hint, ok := st.Details()[0].(*leasepb.LeaderHint)
	if !ok || hint.Id != "n2" || hint.Address != "127.0.0.1:7002" {
		t.Fatalf("hint %v", st.Details()[0])
	}
	if !errors.Is(&NotLeaderError{}, ErrNotLeader) || !strings.Contains((&NotLeaderError{}).Error(), "no leader") {
		t.Fatal("NotLeaderError without a leader")
	}
}
