package leasehttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/leasecluster/leasecluster/limits"
)

// Sentinel errors of request decoding. The limits themselves (key and
// value sizes, TTL and lease ID ranges, body size) are package limits'.
var (
	ErrBadRequest = errors.New("leasehttp: bad request")
	// ErrBodyTooBig is limits.ErrBodyTooLarge: a body over
	// limits.MaxBodyBytes, answered 413.
	ErrBodyTooBig  = limits.ErrBodyTooLarge
	errOutOfRange  = errors.New("leasehttp: number out of range")
	errNotInteger  = errors.New("leasehttp: not an integer")
	errEmptyString = errors.New("leasehttp: empty string")
)

// jsonInt64 is a 64-bit integer written as a decimal string and read from a
// string or a number. Numbers are parsed from their text, never through
// float64, so IDs above 2^53 survive.
type jsonInt64 int64

func (v jsonInt64) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(strconv.FormatInt(int64(v), 10))), nil
}

func (v *jsonInt64) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil // as encoding/json does for absent values
	}
	s, err := integerText(b)
	if err != nil {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s", errOutOfRange, s)
	}
	*v = jsonInt64(n)
	return nil
}

// jsonLeaseID is a lease ID in a request body, a string or a number whose
// text limits.ParseLeaseID accepts (the parser of the IDs in paths too).
type jsonLeaseID int64

func (v *jsonLeaseID) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil // as encoding/json does for absent values
	}
	s, err := idText(b)
	if err != nil {
		return err
	}
	id, err := limits.ParseLeaseID(s)
	if err != nil {
		return err
	}
	*v = jsonLeaseID(id)
	return nil
}

// jsonGrantID is the optional ID of a grant: a lease ID, or 0 (as in the
// gRPC API and etcd's), absent or null for "the leader chooses".
type jsonGrantID int64

func (v *jsonGrantID) UnmarshalJSON(b []byte) error {
	if s, err := idText(b); err == nil && s == "0" {
		*v = 0
		return nil
	}
	var id jsonLeaseID
	if err := id.UnmarshalJSON(b); err != nil {
		return err
	}
	*v = jsonGrantID(id)
	return nil
}

// idText returns the text of a JSON number, or the contents of a JSON string.
func idText(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '"' {
		return string(b), nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", err
	}
	return s, nil
}

// strictString is a JSON string taken as sent. encoding/json replaces
// invalid UTF-8 and lone surrogate escapes ("\ud800") with U+FFFD; here
// either is an error (limits.ErrValueInvalid), so a value is never stored
// other than it was sent. null leaves it empty, as for a plain string.
type strictString string

func (v *strictString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if !utf8.Valid(b) || loneSurrogate(b) {
		return limits.ErrValueInvalid
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*v = strictString(s)
	return nil
}

// loneSurrogate reports a \uXXXX escape of a UTF-16 surrogate that is not
// a high surrogate followed by a low one, in the raw text of a JSON string
// (which the decoder has already found well formed).
func loneSurrogate(b []byte) bool {
	hex4 := func(i int) rune { // the 4 hex digits of the \u escape at b[i]
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return -1
		}
		n, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		if err != nil {
			return -1
		}
		return rune(n)
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		r := hex4(i)
		switch {
		case r < 0:
			i++ // a one-character escape: skip the escaped character
		case r >= 0xD800 && r < 0xDC00:
			if lo := hex4(i + 6); lo < 0xDC00 || lo >= 0xE000 {
				return true
			}
			i += 11
		case r >= 0xDC00 && r < 0xE000:
			return true
		default:
			i += 5
		}
	}
	return false
}

// jsonUint64 is jsonInt64 for unsigned values (revisions).
type jsonUint64 uint64

func (v jsonUint64) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(strconv.FormatUint(uint64(v), 10))), nil
}

// integerText returns the decimal text of a JSON number or string holding an
// integer.
func integerText(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", err
		}
		if s == "" {
			return "", errEmptyString
		}
		b = []byte(s)
	}
	for i, ch := range b {
		if !(ch >= '0' && ch <= '9' || i == 0 && ch == '-') {
			return "", fmt.Errorf("%w: %s", errNotInteger, b)
		}
	}
	return string(b), nil
}

// parseID parses a lease ID in a path or query parameter.
func parseID(s string) (int64, error) {
	id, err := limits.ParseLeaseID(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return id, nil
}

// tooBig reports a declared body length over limits.MaxBodyBytes, which is
// answered 413 before any of the body is read.
func tooBig(r *http.Request) error {
	if r.ContentLength > limits.MaxBodyBytes {
		return fmt.Errorf("%w: Content-Length %d", ErrBodyTooBig, r.ContentLength)
	}
	return nil
}

// decode reads exactly one JSON object into v, rejecting unknown fields,
// trailing data and bodies over limits.MaxBodyBytes. The whole body is read
// before it is parsed, so a body over the limit gets 413 whatever it holds,
// with or without a Content-Length. Nothing is changed on error.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := tooBig(r); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limits.MaxBodyBytes))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return fmt.Errorf("%w: over %d bytes", ErrBodyTooBig, limits.MaxBodyBytes)
	case err != nil:
		return fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
	// encoding/json would replace invalid UTF-8 with U+FFFD and store a
	// value other than the one sent; JSON text must be UTF-8 (RFC 8259).
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: the body is not valid UTF-8", ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body", ErrBadRequest)
	}
	return fmt.Errorf("%w: %w", ErrBadRequest, err)
}

// Request and response bodies. Field names are the HTTP contract.
type (
	grantRequest struct {
		TTLMs *jsonInt64  `json:"ttl_ms"`
		ID    jsonGrantID `json:"id"` // 0, absent or null: the leader chooses
	}
	leaseResponse struct {
		ID    jsonInt64 `json:"id"`
		TTLMs int64     `json:"ttl_ms"`
	}
	leaseInfo struct {
		ID           jsonInt64 `json:"id"`
		GrantedTTLMs int64     `json:"granted_ttl_ms"`
		RemainingMs  int64     `json:"remaining_ms"`
		Owner        string    `json:"owner,omitempty"` // the identity that granted it
	}
	leaseDetail struct {
		leaseInfo
		Items []string `json:"items"`
	}
	leasesResponse struct {
		Leases []leaseInfo `json:"leases"`
	}
	attachRequest struct {
		LeaseID *jsonLeaseID `json:"lease_id"`
		Value   strictString `json:"value"`
	}
	itemResponse struct {
		Key      string     `json:"key"`
		LeaseID  jsonInt64  `json:"lease_id"`
		Value    string     `json:"value"`
		Revision jsonUint64 `json:"revision"`
	}
	statusResponse struct {
		Name         string `json:"name"`
		Role         string `json:"role"`
		Leader       string `json:"leader"`
		Term         uint64 `json:"term"`
		AppliedIndex uint64 `json:"applied_index"`
		RaftLog      string `json:"raft_log,omitempty"` // "wal" or "boltdb"; absent from nodes that do not say
	}
	errorBody struct {
		Error errorDetail `json:"error"`
	}
	errorDetail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)
