package limits_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/leasecluster/leasecluster/limits"
)

func TestCheckKey(t *testing.T) {
	for _, key := range []string{"k", "a//b", ".", "..", "a/./b", "a/../b", "/", "ключ", strings.Repeat("k", limits.MaxKeyBytes)} {
		if err := limits.CheckKey(key); err != nil {
			t.Errorf("CheckKey(%q) = %v, want nil", key, err)
		}
	}
	for _, key := range []string{"", strings.Repeat("k", limits.MaxKeyBytes+1), "\xff", strings.Repeat("é", limits.MaxKeyBytes/2) + "x"} {
		if err := limits.CheckKey(key); !errors.Is(err, limits.ErrKeyInvalid) {
			t.Errorf("CheckKey(%d bytes) = %v, want ErrKeyInvalid", len(key), err)
		}
	}
}

func TestCheckValue(t *testing.T) {
	for _, v := range []string{"", "v", strings.Repeat("v", limits.MaxValueBytes)} {
		if err := limits.CheckValue(v); err != nil {
			t.Errorf("CheckValue(%d bytes) = %v", len(v), err)
		}
	}
	if err := limits.CheckValue(strings.Repeat("v", limits.MaxValueBytes+1)); !errors.Is(err, limits.ErrValueTooLarge) {
		t.Errorf("value over the limit: %v", err)
	}
	if err := limits.CheckValue("a\xffb"); !errors.Is(err, limits.ErrValueInvalid) {
		t.Errorf("value not UTF-8: %v", err)
	}
}

func TestCheckTTL(t *testing.T) {
	for _, ms := range []int64{1, 60000, limits.MaxTTLMs} {
		if err := limits.CheckTTLMs(ms); err != nil {
			t.Errorf("CheckTTLMs(%d) = %v", ms, err)
		}
	}
	for _, ms := range []int64{0, -1, math.MinInt64, limits.MaxTTLMs + 1, math.MaxInt64} {
		if err := limits.CheckTTLMs(ms); !errors.Is(err, limits.ErrTTLInvalid) {
			t.Errorf("CheckTTLMs(%d) = %v, want ErrTTLInvalid", ms, err)
		}
	}
	for _, d := range []time.Duration{time.Millisecond, 1500 * time.Microsecond, time.Hour, math.MaxInt64} {
		if err := limits.CheckTTL(d); err != nil {
			t.Errorf("CheckTTL(%v) = %v", d, err)
		}
	}
	for _, d := range []time.Duration{0, -time.Second, time.Millisecond - 1} {
		if err := limits.CheckTTL(d); !errors.Is(err, limits.ErrTTLInvalid) {
			t.Errorf("CheckTTL(%v) = %v, want ErrTTLInvalid", d, err)
		}
	}
}

func TestParseLeaseID(t *testing.T) {
	for s, want := range map[string]int64{
		"1": 1, "1001": 1001, "007": 7, "9223372036854775807": math.MaxInt64,
	} {
		if got, err := limits.ParseLeaseID(s); err != nil || got != want {
			t.Errorf("ParseLeaseID(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{
		"", "0", "-1", "+1001", " 1", "1 ", "1e3", "1.0", "0x10", "١", "9223372036854775808",
		"99999999999999999999999999999999999999999999999999", "-0", "00",
	} {
		if got, err := limits.ParseLeaseID(s); !errors.Is(err, limits.ErrLeaseIDInvalid) || got != 0 {
			t.Errorf("ParseLeaseID(%q) = %d, %v; want ErrLeaseIDInvalid", s, got, err)
		}
	}
	if err := limits.CheckLeaseID(0); !errors.Is(err, limits.ErrLeaseIDInvalid) {
		t.Errorf("CheckLeaseID(0) = %v", err)
	}
	if err := limits.CheckLeaseID(math.MaxInt64); err != nil {
		t.Errorf("CheckLeaseID(max) = %v", err)
	}
}

func TestCheckIdentity(t *testing.T) {
	for _, id := range []string{"", "app1", "CN with spaces", "ключ", strings.Repeat("a", limits.MaxIdentityBytes)} {
		if err := limits.CheckIdentity(id); err != nil {
			t.Errorf("CheckIdentity(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{strings.Repeat("a", limits.MaxIdentityBytes+1), "a\xffb", strings.Repeat("é", limits.MaxIdentityBytes/2) + "x"} {
		if err := limits.CheckIdentity(id); !errors.Is(err, limits.ErrIdentityInvalid) {
			t.Errorf("CheckIdentity(%d bytes) = %v, want ErrIdentityInvalid", len(id), err)
		}
	}
}
