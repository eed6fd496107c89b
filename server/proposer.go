package server

import (
	"context"
	"fmt"
	"time"

	"github.com/leasecluster/leasecluster/fsm"
)

// proposer is the one path into raft.Apply. Every command this node
// replicates goes through it: client mutations, renewal resets, expiry
// revokes and checkpoints. propose gives a command an entry of its own;
// proposeGrouped lets grants and client revokes share an entry through the
// group committer (groupcommit.go).
type proposer struct {
	rs           *raftStack
	leading      func() bool
	applyTimeout time.Duration // when the caller's context sets no deadline
	metrics      *metrics
	stop         <-chan struct{} // the node's stop

	group chan *proposal // to the group committer
}

func newProposer(rs *raftStack, leading func() bool, applyTimeout time.Duration, m *metrics, stop <-chan struct{}) *proposer {
	return &proposer{rs: rs, leading: leading, applyTimeout: applyTimeout, metrics: m, stop: stop,
		group: make(chan *proposal, maxGroup)}
}

// timeout bounds how long raft may take, by the caller's deadline.
func (p *proposer) timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return p.applyTimeout
}

// propose replicates one command in an entry of its own and returns its
// result once it has been applied on this node (the leader).
func (p *proposer) propose(ctx context.Context, data []byte) (*fsm.Result, error) {
	if !p.leading() {
		return nil, p.rs.notLeader()
	}
	f := p.rs.raft.Apply(data, p.timeout(ctx))
	if err := f.Error(); err != nil {
		return nil, p.rs.err(err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("server: unexpected apply response %T", f.Response())
	}
	return res, res.Err
}

// proposeGrouped is propose for commands that may share a log entry
// (grants and client revokes).
func (p *proposer) proposeGrouped(ctx context.Context, data []byte) (*fsm.Result, error) {
	if !p.leading() {
		return nil, p.rs.notLeader()
	}
	if err := ctx.Err(); err != nil {
		return nil, err // not proposed: a select below could otherwise enqueue it
	}
	pr := &proposal{data: data, done: make(chan struct{})}
	select {
	case p.group <- pr:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stop:
		return nil, ErrStopped
	}
	select {
	case <-pr.done:
		if pr.err != nil {
			return nil, pr.err
		}
		return pr.res, pr.res.Err
	case <-ctx.Done():
		if pr.state.CompareAndSwap(proposalWaiting, proposalAbandoned) {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-p.stop:
		if pr.state.CompareAndSwap(proposalWaiting, proposalAbandoned) {
			return nil, ErrStopped
		}
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrStopped)
	}
}
