package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

// Sentinel errors. Compare with errors.Is.
var (
	// ErrLeaseNotFound: the lease does not exist (never granted, revoked or expired).
	ErrLeaseNotFound = errors.New("client: lease not found")
	// ErrLeaseExists: Grant with a chosen ID that is already in use.
	ErrLeaseExists = errors.New("client: lease already exists")
	// ErrItemHeld: the item is attached to another lease.
	ErrItemHeld = errors.New("client: item held by another lease")
	// ErrItemNotFound: no item with that key.
	ErrItemNotFound = errors.New("client: item not found")
	// ErrInvalidArgument: the server (or the client, before sending) rejected
	// the request. A Grant whose TTL or ID is outside the limits of package
	// limits is refused before it is sent, with an error that also matches
	// the limits sentinel (limits.ErrTTLInvalid, limits.ErrLeaseIDInvalid).
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrPermissionDenied: the lease belongs to another identity (a client
	// certificate's CN) and this client's is neither it nor an admin's
	// (gRPC PermissionDenied). Not retried: the answer will not change.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrQuotaExceeded: the cluster refused the request because it would
	// pass a quota (--max-leases, --max-items-per-lease) or a message size
	// limit (gRPC ResourceExhausted). Not retried: the answer changes only
	// once leases or items go.
	ErrQuotaExceeded = errors.New("client: quota exceeded")
	// ErrUnsupported: the cluster cannot carry out the request (gRPC
	// Unimplemented): a node runs a version that does not know the command
	// or the method, as during a rolling upgrade. Retrying will not help
	// until the versions agree.
	ErrUnsupported = errors.New("client: not supported by the cluster")
	// ErrNoLeader: no leader could be reached before the context ended or the
	// retry budget ran out. The outcome of a mutation is unknown; retrying it is safe.
	ErrNoLeader = errors.New("client: no leader reachable")
	// ErrLeaseExpired: a kept-alive lease's local deadline passed without an
	// acknowledged renewal, so the lease may be gone.
	ErrLeaseExpired = errors.New("client: lease deadline passed without renewal")
	// ErrClosed: the Client, KeepAlive or Lock was closed.
	ErrClosed = errors.New("client: closed")
	// ErrInternal: any other server error.
	ErrInternal = errors.New("client: internal server error")
)

// rpcError keeps the gRPC status next to the sentinel, so callers can use
// errors.Is for the meaning and status.FromError for the details.
type rpcError struct {
	sentinel error
	st       *status.Status
}

func (e *rpcError) Error() string {
	if msg := e.st.Message(); msg != "" {
		return e.sentinel.Error() + ": " + msg
	}
	return e.sentinel.Error()
}

func (e *rpcError) Unwrap() error              { return e.sentinel }
func (e *rpcError) GRPCStatus() *status.Status { return e.st }

// mapError is the one place where gRPC codes become client errors. notFound
// says what NotFound means for the operation (a lease or an item). The
// server's side of the table is server/errors.go (toStatus), the HTTP side
// leasehttp's fail; server/errors_test.go runs every sentinel through all
// three.
//
//	NotFound                 -> notFound (ErrLeaseNotFound or ErrItemNotFound)
//	AlreadyExists            -> ErrLeaseExists
//	FailedPrecondition       -> ErrItemHeld
//	PermissionDenied         -> ErrPermissionDenied
//	InvalidArgument, OutOfRange -> ErrInvalidArgument
//	Unimplemented            -> ErrUnsupported
//	ResourceExhausted        -> ErrQuotaExceeded
//	Unavailable              -> ErrNoLeader (after retries: retriable)
//	DeadlineExceeded         -> context.DeadlineExceeded (retried first)
//	Canceled                 -> context.Canceled
//	anything else            -> ErrInternal
func mapError(err error, notFound error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrClosed) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var sentinel error
	switch st.Code() {
	case codes.NotFound:
		sentinel = notFound
	case codes.AlreadyExists:
		sentinel = ErrLeaseExists
	case codes.FailedPrecondition:
		sentinel = ErrItemHeld
	case codes.PermissionDenied:
		sentinel = ErrPermissionDenied
	case codes.InvalidArgument, codes.OutOfRange:
		sentinel = ErrInvalidArgument
	case codes.Unimplemented:
		sentinel = ErrUnsupported
	case codes.ResourceExhausted:
		sentinel = ErrQuotaExceeded
	case codes.Unavailable:
		sentinel = ErrNoLeader
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.Canceled:
		sentinel = context.Canceled
	default:
		sentinel = ErrInternal
	}
	return &rpcError{sentinel: sentinel, st: st}
}

// retriable reports whether err may be retried with the same request ID, and
// the leader address hinted by the server, if any. Unavailable means "not the
// leader" or "cannot connect"; DeadlineExceeded and Aborted mean the outcome is
// unknown. Both are safe to retry because the server deduplicates request IDs.
func retriable(err error) (retry bool, hint string) {
	st, ok := status.FromError(err)
	if !ok {
		return false, ""
	}
	switch st.Code() {
	case codes.Unavailable:
		return true, leaderHint(st)
	case codes.DeadlineExceeded, codes.Aborted:
		return true, ""
	}
	return false, ""
}

func leaderHint(st *status.Status) string {
	for _, d := range st.Details() {
		if h, ok := d.(*leasepb.LeaderHint); ok {
			return h.GetAddress()
		}
	}
	return ""
}

// finalError builds the error returned when ctx ended (or the retry budget ran
// out) while the last attempt failed with a retriable error.
func finalError(ctx context.Context, last error) error {
	if last == nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		return ErrNoLeader
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w (last error: %v)", ErrNoLeader, ctx.Err(), last)
	}
	return fmt.Errorf("%w: retry budget exhausted (last error: %v)", ErrNoLeader, last)
}

// invalid turns the error of a limits check into one that also matches
// ErrInvalidArgument, the error the server would have answered with.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
}
