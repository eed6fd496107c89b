package leasehttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Limits of the HTTP API, as documented in ARCHITECTURE.md.
const (
	MaxBodyBytes = 1 << 20  // request bodies; larger ones get 413
	MaxKeyBytes  = 1024     // item keys are 1..MaxKeyBytes bytes of UTF-8
	MaxValueSize = 64 << 10 // item values
)

// Sentinel errors of request decoding.
var (
	ErrBadRequest  = errors.New("leasehttp: bad request")
	ErrBodyTooBig  = errors.New("leasehttp: request body too large")
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

func parseID(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad id %q", ErrBadRequest, s)
	}
	return n, nil
}

// decode reads exactly one JSON object into v, rejecting unknown fields,
// trailing data and bodies over MaxBodyBytes. Nothing is changed on error.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return fmt.Errorf("%w: over %d bytes", ErrBodyTooBig, MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body", ErrBadRequest)
	}
	return fmt.Errorf("%w: %v", ErrBadRequest, err)
}

// Request and response bodies. Field names are the HTTP contract.
type (
	grantRequest struct {
		TTLMs *jsonInt64 `json:"ttl_ms"`
		ID    jsonInt64  `json:"id"`
	}
	leaseResponse struct {
		ID    jsonInt64 `json:"id"`
		TTLMs int64     `json:"ttl_ms"`
	}
	leaseInfo struct {
		ID           jsonInt64 `json:"id"`
		GrantedTTLMs int64     `json:"granted_ttl_ms"`
		RemainingMs  int64     `json:"remaining_ms"`
	}
	leaseDetail struct {
		leaseInfo
		Items []string `json:"items"`
	}
	leasesResponse struct {
		Leases []leaseInfo `json:"leases"`
	}
	attachRequest struct {
		LeaseID *jsonInt64 `json:"lease_id"`
		Value   string     `json:"value"`
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
	}
	errorBody struct {
		Error errorDetail `json:"error"`
	}
	errorDetail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)
