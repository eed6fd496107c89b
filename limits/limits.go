// Package limits is the one home of the request limits every layer checks:
// the HTTP API (leasehttp), the client library, the gRPC server and the
// replicated state machine (fsm) take the sizes and ranges of a request from
// here and nowhere else.
//
// A request that breaks a limit is refused with one of the sentinel errors
// below (compare with errors.Is). The server answers them with gRPC
// InvalidArgument, the client returns client.ErrInvalidArgument, and the HTTP
// API answers 400 INVALID_ARGUMENT, except a body over MaxBodyBytes, which is
// 413 PAYLOAD_TOO_LARGE.
//
// Limits that are node settings (the TTL floor a server raises short TTLs to,
// its --max-ttl) are not request limits and live in the server's Config.
//
// The package imports only the standard library, so every layer may use it.
package limits

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// The limits.
const (
	// MaxKeyBytes: an item key is 1 to MaxKeyBytes bytes of valid UTF-8.
	MaxKeyBytes = 1024
	// MaxValueBytes: an item value is at most MaxValueBytes bytes (64 KiB) of
	// valid UTF-8. The empty value is allowed.
	MaxValueBytes = 64 << 10
	// MaxBodyBytes: an HTTP request body is at most MaxBodyBytes (1 MiB).
	MaxBodyBytes = 1 << 20
	// MinTTLMs and MaxTTLMs bound the TTL a request can carry. TTLs travel
	// as whole milliseconds, and MaxTTLMs is the most that fits a
	// time.Duration. A server refuses TTLs above its own --max-ttl and
	// raises those below its minimum; those are node settings.
	MinTTLMs = 1
	MaxTTLMs = math.MaxInt64 / int64(time.Millisecond)
	// MinLeaseID and MaxLeaseID bound lease IDs. 0 is no lease: a grant
	// that names no ID lets the leader choose one.
	MinLeaseID = 1
	MaxLeaseID = math.MaxInt64
	// MaxIdentityBytes: a client identity (a certificate's CN), as a
	// lease's owner or a command's actor, is at most MaxIdentityBytes bytes
	// of valid UTF-8. The empty identity is allowed: no owner, no identity.
	MaxIdentityBytes = 1024
)

// Sentinel errors. The functions below wrap them with details. Their texts
// are made from the constants, so each limit is written once.
var (
	ErrKeyInvalid      = fmt.Errorf("limits: item key must be 1 to %d bytes of valid UTF-8", MaxKeyBytes)
	ErrValueTooLarge   = fmt.Errorf("limits: item value exceeds %d bytes", MaxValueBytes)
	ErrValueInvalid    = errors.New("limits: item value is not valid UTF-8")
	ErrTTLInvalid      = fmt.Errorf("limits: TTL must be a whole number of milliseconds from %d to %d", MinTTLMs, MaxTTLMs)
	ErrLeaseIDInvalid  = fmt.Errorf("limits: lease ID must be a decimal integer from %d to %d", MinLeaseID, MaxLeaseID)
	ErrBodyTooLarge    = fmt.Errorf("limits: request body exceeds %d bytes", MaxBodyBytes)
	ErrIdentityInvalid = fmt.Errorf("limits: identity must be at most %d bytes of valid UTF-8", MaxIdentityBytes)
)

// CheckKey returns an error wrapping ErrKeyInvalid unless key is 1 to
// MaxKeyBytes bytes of valid UTF-8. Any such key is valid, '/' and path
// segments such as "." and ".." included: keys are stored verbatim.
func CheckKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyBytes || !utf8.ValidString(key) {
		return fmt.Errorf("%w (got %d bytes)", ErrKeyInvalid, len(key))
	}
	return nil
}

// CheckValue returns an error wrapping ErrValueTooLarge for a value over
// MaxValueBytes, or ErrValueInvalid for one that is not valid UTF-8 (gRPC
// carries values as proto3 strings, which must be UTF-8).
func CheckValue(v string) error {
	if len(v) > MaxValueBytes {
		return fmt.Errorf("%w (got %d bytes)", ErrValueTooLarge, len(v))
	}
	if !utf8.ValidString(v) {
		return ErrValueInvalid
	}
	return nil
}

// CheckIdentity returns an error wrapping ErrIdentityInvalid unless id is
// at most MaxIdentityBytes bytes of valid UTF-8. The empty identity is
// valid: a lease without an owner, a command from a caller without one.
func CheckIdentity(id string) error {
	if len(id) > MaxIdentityBytes || !utf8.ValidString(id) {
		return fmt.Errorf("%w (got %d bytes)", ErrIdentityInvalid, len(id))
	}
	return nil
}

// CheckTTLMs returns an error wrapping ErrTTLInvalid unless ms is within
// MinTTLMs..MaxTTLMs.
func CheckTTLMs(ms int64) error {
	if ms < MinTTLMs || ms > MaxTTLMs {
		return fmt.Errorf("%w (got %d ms)", ErrTTLInvalid, ms)
	}
	return nil
}

// CheckTTL is CheckTTLMs for a duration, which a request carries in whole
// milliseconds (a TTL under 1 ms is refused).
func CheckTTL(ttl time.Duration) error {
	if CheckTTLMs(ttl.Milliseconds()) != nil {
		return fmt.Errorf("%w (got %v)", ErrTTLInvalid, ttl)
	}
	return nil
}

// CheckLeaseID returns an error wrapping ErrLeaseIDInvalid unless id is
// within MinLeaseID..MaxLeaseID.
func CheckLeaseID(id int64) error {
	if id < MinLeaseID {
		return fmt.Errorf("%w (got %d)", ErrLeaseIDInvalid, id)
	}
	return nil
}

// ParseLeaseID is the one parser of lease IDs written as text (HTTP paths,
// query parameters and JSON bodies, command-line arguments): decimal digits
// only (no sign, no spaces, no exponent), with a value from MinLeaseID to
// MaxLeaseID. Anything else is an error wrapping ErrLeaseIDInvalid.
func ParseLeaseID(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("%w (got an empty string)", ErrLeaseIDInvalid)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w (got %s)", ErrLeaseIDInvalid, quote(s))
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w (got %s)", ErrLeaseIDInvalid, quote(s))
	}
	if err := CheckLeaseID(id); err != nil {
		return 0, err
	}
	return id, nil
}

// quote quotes s for an error message, cut short if long.
func quote(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
