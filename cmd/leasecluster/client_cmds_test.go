package main

import (
	"errors"
	"testing"

	"github.com/leasecluster/leasecluster/limits"
)

// Lease ID arguments parse as the HTTP API parses them (limits.ParseLeaseID).
func TestParseID(t *testing.T) {
	if id, err := parseID("1001"); err != nil || id != 1001 {
		t.Fatalf("parseID(1001) = %d, %v", id, err)
	}
	for _, s := range []string{"+1001", "-1", "0", " 1", "1e3", "9223372036854775808", ""} {
		if _, err := parseID(s); !errors.Is(err, limits.ErrLeaseIDInvalid) {
			t.Errorf("parseID(%q) = %v, want limits.ErrLeaseIDInvalid", s, err)
		}
	}
}
