package server

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
)

// appliedFSM wraps the FSM to tell waiters when an index has been applied,
// which linearizable reads need (wait until applied >= the commit index seen
// when the read arrived).
type appliedFSM struct {
	*fsm.FSM
	mu      sync.Mutex
	index   uint64
	changed chan struct{}             // closed and replaced whenever index advances
	rewrite func(*raft.Log) *raft.Log // Faults.ApplyEntry; nil but in the diverge variant
}

var _ raft.BatchingFSM = (*appliedFSM)(nil)

func newAppliedFSM(f *fsm.FSM) *appliedFSM {
	return &appliedFSM{FSM: f, changed: make(chan struct{})}
}

func (a *appliedFSM) Apply(l *raft.Log) interface{} {
	if a.rewrite != nil {
		l = a.rewrite(l)
	}
	r := a.FSM.Apply(l)
	a.advance(l.Index)
	return r
}

func (a *appliedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	if a.rewrite != nil {
		logs = rewriteAll(logs, a.rewrite)
	}
	r := a.FSM.ApplyBatch(logs)
	if len(logs) > 0 {
		a.advance(logs[len(logs)-1].Index)
	}
	return r
}

// rewriteAll passes each entry through rewrite, into a new slice (raft
// keeps the one it passed).
func rewriteAll(logs []*raft.Log, rewrite func(*raft.Log) *raft.Log) []*raft.Log {
	out := make([]*raft.Log, len(logs))
	for i, l := range logs {
		out[i] = rewrite(l)
	}
	return out
}

func (a *appliedFSM) Restore(rc io.ReadCloser) error {
	if err := a.FSM.Restore(rc); err != nil {
		return err
	}
	a.advance(a.FSM.AppliedIndex())
	return nil
}

func (a *appliedFSM) advance(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if index > a.index {
		a.index = index
		close(a.changed)
		a.changed = make(chan struct{})
	}
}

// wait returns once index has been applied, or when ctx ends. Raft applies
// barrier and no-op entries without passing them to the FSM, so raftApplied
// (raft's own applied index) is consulted too, on a short poll.
func (a *appliedFSM) wait(ctx context.Context, index uint64, raftApplied func() uint64) error {
	var poll *time.Timer
	for {
		a.mu.Lock()
		done := a.index >= index
		ch := a.changed
		a.mu.Unlock()
		if done || raftApplied() >= index {
			return nil
		}
		if poll == nil {
			poll = time.NewTimer(time.Millisecond)
			defer poll.Stop()
		} else {
			poll.Reset(time.Millisecond)
		}
		select {
		case <-ch:
		case <-poll.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
