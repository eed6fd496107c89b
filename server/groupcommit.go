package server

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
)

// Group commit. hashicorp/raft spends most of a write on work per log entry:
// the leader's log write (a bbolt transaction with two fsyncs) before it
// replicates, each follower's, the encoding, the FSM dispatch. So grants and
// client revokes do not each get an entry: one goroutine takes every such
// proposal that is waiting, joins them into one batch entry
// (fsm.EncodeBatch) and hands it to raft.Apply. One batch at a time is
// proposed and not yet applied; the proposals that arrive meanwhile form the
// next batch (up to maxGroup). A lone proposal goes alone, at no extra
// wait. Each command in a batch applies exactly as it would in an entry of
// its own, with its own result and request-ID deduplication.
//
// Under load the committer lingers briefly for the callers it has just
// answered (gather): in a closed loop they send again within a round trip,
// and without the wait they would miss the next batch and form a batch of
// their own one commit later. A raft entry costs far more than a command in
// it (each node's bbolt commit is two fsyncs and a handful of thread
// wake-ups; bench/results/design-measurements.md, server group commit), so
// fewer, fuller entries are the whole game for throughput.

// maxGroup bounds the commands in one batch entry.
const maxGroup = 256

// One batch entry in flight: everything that arrives while an entry commits
// waits for the next, bigger, one. Two entries proposed back to back mostly
// went to raft's log in one write anyway, so a second in flight bought no
// overlap and cost throughput (measured with a bound maxInflight, since
// removed: bench/results/design-measurements.md, server).

// lingerFraction sets the linger for returning callers, counted from the
// first one back: the last entry's commit time divided by this (longer only
// when fewer than half are back by then, see lingerExtension). Counting from
// the first caller back rather than from the freed slot matters on a loaded
// machine, where the callers' round trip alone outlasts a linger counted
// from the commit. A lone proposal, or one after a lone proposal, never
// lingers, so single-client latency pays nothing.
const lingerFraction = 4

// lingerExtension bounds how long the committer waits on, in lingers after
// the first, when a linger ends with fewer than half of the expected
// callers back. The first caller back is then an early one (the others'
// answers and requests queue behind other processes on a loaded machine),
// and going without the rest would cost them a whole commit: entry sizes
// otherwise alternate (64, 1, 63, 2, ...). 8 lingers did no better than 4.
const lingerExtension = 4

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

// commitLoop is the group committer: it runs for the node's life, until stop
// closes. It proposes one batch entry at a time and answers its proposals
// once raft has applied it (one entry in flight); what arrives meanwhile waits in
// p.group, where its callers may still take it back, and forms the next
// batch. Answering here rather than on a goroutine of its own spares every
// entry a hand-off: nothing could be proposed before the answer anyway.
func (p *proposer) commitLoop() {
	batch := make([]*proposal, 0, maxGroup)
	datas := make([][]byte, 0, maxGroup)
	var (
		prevSize    int       // proposals in the entry proposed last
		prevPropose time.Time // when it was proposed
	)
	for {
		batch, datas = batch[:0], datas[:0]
		// The last entry has been applied and its callers answered:
		// expect them back, beside those waiting.
		answeredAt := time.Now()
		expect := min(maxGroup, len(p.group)+prevSize)
		linger := answeredAt.Sub(prevPropose) / lingerFraction
		batch, stopped := collect(p.group, batch, prevSize, expect, linger, p.stop)
		if stopped {
			fail(batch, ErrStopped) // never proposed
			return
		}
		if len(batch) == 0 {
			continue
		}
		data := batch[0].data
		if len(batch) > 1 {
			for _, pr := range batch {
				datas = append(datas, pr.data)
			}
			var err error
			if data, err = fsm.EncodeBatch(datas); err != nil {
				fail(batch, err)
				continue
			}
			p.metrics.groupedCommands.Add(float64(len(batch)))
		}
		p.metrics.groupEntries.Inc()
		prevSize, prevPropose = len(batch), time.Now()
		// raft answers every future it took (applied, leadership lost,
		// shut down) and refuses one it could not take within the timeout.
		p.answer(p.rs.raft.Apply(data, p.applyTimeout), batch)
	}
}

// collect waits for the next proposal and takes it with every other one
// waiting. After an entry of several proposals (prevSize) it then lingers
// (gather) for up to linger after that first arrival, not after the slot
// freed: the callers of the last entry come back together, one client
// round trip after they were answered, and on a loaded machine that round
// trip alone can outlast the linger. Counted from the slot, the first
// caller back went alone and the rest formed the next entry: entries of 63
// and 1 in turn, where one of 64 would do. If fewer than half of them are
// back when the linger ends, it waits on (see lingerExtension).
func collect(group <-chan *proposal, batch []*proposal, prevSize, expect int, linger time.Duration, stop <-chan struct{}) ([]*proposal, bool) {
	select {
	case <-stop:
		return batch, true
	case p := <-group:
		batch = appendTaken(batch, p)
	}
	if prevSize <= 1 {
		return drain(group, batch), false
	}
	return gather(group, batch, expect, linger, stop)
}

// drain adds every proposal waiting in group to batch, up to maxGroup.
func drain(group <-chan *proposal, batch []*proposal) []*proposal {
	for len(batch) < maxGroup {
		select {
		case p := <-group:
			batch = appendTaken(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// gather drains group into batch and, while batch holds fewer than expect
// proposals, waits for more for up to linger. If fewer than half of expect
// are in when the linger ends, it waits on for all of them, up to
// lingerExtension lingers more. It reports whether stop closed first.
func gather(group <-chan *proposal, batch []*proposal, expect int, linger time.Duration, stop <-chan struct{}) ([]*proposal, bool) {
	expect = min(expect, maxGroup)
	batch = drain(group, batch)
	if len(batch) >= expect || linger <= 0 {
		return batch, false
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	extended := false
	for len(batch) < expect {
		select {
		case p := <-group:
			batch = drain(group, appendTaken(batch, p))
		case <-timer.C:
			if extended || 2*len(batch) >= expect {
				return batch, false
			}
			extended = true
			timer.Reset(lingerExtension * linger)
		case <-stop:
			return batch, true
		}
	}
	return batch, false
}

// appendTaken adds p to batch unless its caller has given up on it.
func appendTaken(batch []*proposal, p *proposal) []*proposal {
	if p.state.CompareAndSwap(proposalWaiting, proposalTaken) {
		batch = append(batch, p)
	}
	return batch
}

// answer waits for a batch entry to be applied and answers each of its
// proposals.
func (p *proposer) answer(f raft.ApplyFuture, batch []*proposal) {
	if err := f.Error(); err != nil {
		fail(batch, p.rs.err(err))
		return
	}
	res, ok := f.Response().(*fsm.Result)
	switch {
	case !ok:
		fail(batch, fmt.Errorf("server: unexpected apply response %T", f.Response()))
	case len(batch) == 1:
		batch[0].res = res
		close(batch[0].done)
	case res.Err != nil || len(res.Batch) != len(batch):
		fail(batch, fmt.Errorf("server: batch of %d applied as %d results: %v", len(batch), len(res.Batch), res.Err))
	default:
		for i, pr := range batch {
			pr.res = res.Batch[i]
			close(pr.done)
		}
	}
}

func fail(batch []*proposal, err error) {
	for _, p := range batch {
		p.err = err
		close(p.done)
	}
}
