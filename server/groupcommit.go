package server

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
)

// Group commit. hashicorp/raft spends most of a write on work per log entry:
// the leader's log write (a bbolt transaction with two fsyncs) before it
// replicates, each follower's, the encoding, the FSM dispatch. So grants and
// client revokes do not each get an entry: one goroutine takes every such
// proposal that is waiting, joins them into one batch entry
// (fsm.EncodeBatch) and hands it to raft.Apply. At most maxInflight batches
// are proposed and not yet applied; the proposals that arrive meanwhile form
// the next batch (up to maxGroup). A lone proposal goes alone, at no extra
// wait. Each command in a batch applies exactly as it would in an entry of
// its own, with its own result and request-ID deduplication.

// maxGroup bounds the commands in one batch entry.
const maxGroup = 256

// maxInflight bounds the batch entries proposed and not yet applied. Two
// keep raft busy (the leader writes one while the other replicates) and make
// everything that arrives meanwhile wait for one, bigger, batch: with no
// bound the committer proposed an entry per leader log write, about 19
// grants each at 64 clients, and raft-boltdb's work per entry was 40% of
// the CPU; with two, grants at 64 clients ran 1.3-1.6x faster in
// BenchmarkClusterGrantParallel64 (three runs, each against no bound), and
// a lone proposal still goes at once.
const maxInflight = 2

// proposal is one command waiting for the group committer.
type proposal struct {
	data  []byte
	state atomic.Int32 // proposalWaiting, then proposalTaken or proposalAbandoned
	done  chan struct{}
	res   *fsm.Result // valid after done, if err is nil
	err   error
}

const (
	proposalWaiting   int32 = iota
	proposalTaken           // the committer has it: its outcome is raft's
	proposalAbandoned       // its caller gave up before it was taken: never proposed
)

// committing is a batch that raft has taken, waiting to be applied.
type committing struct {
	f     raft.ApplyFuture
	batch []*proposal
}

// proposeGrouped is propose for commands that may share a log entry
// (grants and client revokes).
func (n *Node) proposeGrouped(ctx context.Context, data []byte) (*fsm.Result, error) {
	if !n.leading.Load() {
		return nil, n.notLeader()
	}
	if err := ctx.Err(); err != nil {
		return nil, err // not proposed: a select below could otherwise enqueue it
	}
	p := &proposal{data: data, done: make(chan struct{})}
	select {
	case n.group <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.stopC:
		return nil, ErrStopped
	}
	select {
	case <-p.done:
		if p.err != nil {
			return nil, p.err
		}
		return p.res, p.res.Err
	case <-ctx.Done():
		if p.state.CompareAndSwap(proposalWaiting, proposalAbandoned) {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-n.stopC:
		if p.state.CompareAndSwap(proposalWaiting, proposalAbandoned) {
			return nil, ErrStopped
		}
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrStopped)
	}
}

// groupCommitLoop is the committer: it runs for the node's life. A second
// goroutine waits for the batches in the order raft took them (raft applies
// entries in log order) and answers their proposals.
func (n *Node) groupCommitLoop() {
	defer n.loops.Done()
	taken := make(chan committing, 64)
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for c := range taken {
			n.answer(c)
		}
	}()
	defer func() {
		close(taken)
		<-answered
	}()
	batch := make([]*proposal, 0, maxGroup)
	datas := make([][]byte, 0, maxGroup)
	for {
		batch, datas = batch[:0], datas[:0]
		// A slot first, then the proposals: until a slot frees they wait
		// in n.group, where their callers may still take them back.
		select {
		case n.groupSlots <- struct{}{}:
		case <-n.stopC:
			return
		}
		select {
		case <-n.stopC:
			return
		case p := <-n.group:
			batch = appendTaken(batch, p)
		}
	drain:
		for len(batch) < maxGroup {
			select {
			case p := <-n.group:
				batch = appendTaken(batch, p)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			<-n.groupSlots
			continue
		}
		data := batch[0].data
		if len(batch) > 1 {
			for _, p := range batch {
				datas = append(datas, p.data)
			}
			var err error
			if data, err = fsm.EncodeBatch(datas); err != nil {
				fail(batch, err)
				<-n.groupSlots
				continue
			}
			n.metrics.groupedCommands.Add(float64(len(batch)))
		}
		n.metrics.groupEntries.Inc()
		f := n.raft.Apply(data, n.cfg.ApplyTimeout)
		select {
		case taken <- committing{f: f, batch: append([]*proposal(nil), batch...)}:
		case <-n.stopC:
			// The answering goroutine drains what it has; these callers
			// see stopC.
			return
		}
	}
}

// appendTaken adds p to batch unless its caller has given up on it.
func appendTaken(batch []*proposal, p *proposal) []*proposal {
	if p.state.CompareAndSwap(proposalWaiting, proposalTaken) {
		batch = append(batch, p)
	}
	return batch
}

// answer waits for a batch to be applied and answers each of its proposals.
func (n *Node) answer(c committing) {
	err := c.f.Error()
	<-n.groupSlots
	if err != nil {
		fail(c.batch, n.raftErr(err))
		return
	}
	res, ok := c.f.Response().(*fsm.Result)
	switch {
	case !ok:
		fail(c.batch, fmt.Errorf("server: unexpected apply response %T", c.f.Response()))
	case len(c.batch) == 1:
		c.batch[0].res = res
		close(c.batch[0].done)
	case res.Err != nil || len(res.Batch) != len(c.batch):
		fail(c.batch, fmt.Errorf("server: batch of %d applied as %d results: %v", len(c.batch), len(res.Batch), res.Err))
	default:
		for i, p := range c.batch {
			p.res = res.Batch[i]
			close(p.done)
		}
	}
}

func fail(batch []*proposal, err error) {
	for _, p := range batch {
		p.err = err
		close(p.done)
	}
}
