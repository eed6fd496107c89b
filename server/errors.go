package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/limits"
)

var (
	// ErrNotLeader: this node cannot serve the request because it does not
	// lead. Errors wrapping it are *NotLeaderError and carry a hint.
	ErrNotLeader = errors.New("server: not the leader")
	// ErrOutcomeUnknown: leadership was lost while a proposal was in flight;
	// it may or may not have been applied. Retry with the same request ID.
	ErrOutcomeUnknown = errors.New("server: leadership lost, outcome unknown")
	// ErrStopped: the node is shutting down.
	ErrStopped = errors.New("server: node stopped")
	// ErrQuotaExceeded: the request would pass --max-leases or
	// --max-items-per-lease. Not retried: it changes only when leases go.
	ErrQuotaExceeded = errors.New("server: quota exceeded")
	// ErrInvalidArgument: the request is malformed or out of range.
	ErrInvalidArgument = errors.New("server: invalid argument")
)

// NotLeaderError names the leader this node knows of, if any.
type NotLeaderError struct {
	LeaderID   string // empty when no leader is known
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "server: not the leader, and no leader is known"
	}
	return fmt.Sprintf("server: not the leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// toStatus maps the node's errors to gRPC status codes, in one place.
// UNAVAILABLE means "ask the leader in the hint, or retry": for mutations it
// may also mean "outcome unknown", which is why every mutation carries a
// request ID that makes the retry safe.
//
// The client turns the codes into its errors (client/errors.go, mapError)
// and the HTTP API those into statuses (leasehttp, fail); errors_test.go
// runs every sentinel through the three:
//
//	NotLeaderError, ErrNotLeader (+ hint), ErrOutcomeUnknown, ErrStopped,
//	lessor.ErrResetRequired                  -> Unavailable        -> client.ErrNoLeader     -> 503 UNAVAILABLE
//	lessor.ErrLeaseNotFound, ErrLeaseExpired -> NotFound           -> client.ErrLeaseNotFound -> 404 NOT_FOUND
//	lessor.ErrItemNotFound                   -> NotFound           -> client.ErrItemNotFound  -> 404 NOT_FOUND
//	lessor.ErrLeaseExists                    -> AlreadyExists      -> client.ErrLeaseExists  -> 409 ALREADY_EXISTS
//	lessor.ErrItemHeld                       -> FailedPrecondition -> client.ErrItemHeld     -> 409 FAILED_PRECONDITION
//	lessor.ErrPermissionDenied               -> PermissionDenied   -> client.ErrPermissionDenied -> 403 PERMISSION_DENIED
//	ErrInvalidArgument, the limits errors (fsm.ErrKeyInvalid, ErrValueTooLarge
//	and ErrValueInvalid are the limits ones; limits.ErrIdentityInvalid), lessor.ErrInvalidTTL,
//	ErrInvalidID, ErrInvalidItem, fsm.ErrNoLeases, ErrDuplicateLease,
//	ErrRequestIDReused                       -> InvalidArgument    -> client.ErrInvalidArgument -> 400 INVALID_ARGUMENT
//	fsm.ErrUnsupportedVersion                -> Unimplemented      -> client.ErrUnsupported  -> 501 UNIMPLEMENTED
//	ErrQuotaExceeded                         -> ResourceExhausted  -> client.ErrQuotaExceeded -> 429 RESOURCE_EXHAUSTED
//	context.DeadlineExceeded                 -> DeadlineExceeded   -> (retried) ErrNoLeader  -> 503 UNAVAILABLE
//	context.Canceled                         -> Canceled           -> context.Canceled       -> 500 INTERNAL
//	anything else (fsm.ErrUndecodable, ErrNotBatchable, lessor.ErrNotPrimary)
//	                                         -> Unknown            -> client.ErrInternal     -> 500 INTERNAL
//
// fsm.ErrUnsupportedVersion has a code of its own: a node that cannot apply
// a command of a newer version (a rolling upgrade) must not be read as "item
// held", which FailedPrecondition means to the client.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var nl *NotLeaderError
	code := codes.Unknown
	switch {
	case errors.As(err, &nl):
		st := status.New(codes.Unavailable, err.Error())
		if d, derr := st.WithDetails(&leasepb.LeaderHint{Id: nl.LeaderID, Address: nl.LeaderAddr}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrOutcomeUnknown), errors.Is(err, ErrStopped),
		errors.Is(err, lessor.ErrResetRequired):
		code = codes.Unavailable
	case errors.Is(err, lessor.ErrLeaseNotFound), errors.Is(err, lessor.ErrLeaseExpired), errors.Is(err, lessor.ErrItemNotFound):
		code = codes.NotFound
	case errors.Is(err, lessor.ErrLeaseExists):
		code = codes.AlreadyExists
	case errors.Is(err, lessor.ErrItemHeld):
		code = codes.FailedPrecondition
	case errors.Is(err, lessor.ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, lessor.ErrInvalidTTL), errors.Is(err, lessor.ErrInvalidID),
		errors.Is(err, lessor.ErrInvalidItem), errors.Is(err, limits.ErrKeyInvalid), errors.Is(err, limits.ErrValueTooLarge),
		errors.Is(err, limits.ErrValueInvalid), errors.Is(err, limits.ErrTTLInvalid), errors.Is(err, limits.ErrLeaseIDInvalid),
		errors.Is(err, limits.ErrBodyTooLarge), errors.Is(err, limits.ErrIdentityInvalid), errors.Is(err, fsm.ErrNoLeases), errors.Is(err, fsm.ErrDuplicateLease),
		errors.Is(err, fsm.ErrRequestIDReused):
		code = codes.InvalidArgument
	case errors.Is(err, fsm.ErrUnsupportedVersion):
		code = codes.Unimplemented
	case errors.Is(err, ErrQuotaExceeded):
		code = codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}
