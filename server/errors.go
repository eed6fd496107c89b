package server

import (
	"errors"
	"fmt"
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
