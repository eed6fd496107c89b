package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
)

// LeaseInfo is a lease as reads return it.
type LeaseInfo struct {
	ID         lessor.LeaseID
	GrantedTTL int64 // ms
	Remaining  time.Duration
	Keys       []string // only when asked for
}

// Status describes this node.
type Status struct {
	Name         string
	Role         string // leader, follower, candidate or shutdown
	Leader       string // name of the known leader, "" if none
	LeaderAddr   string
	Term         uint64
	AppliedIndex uint64
	CommitIndex  uint64
	LastIndex    uint64
	StateHash    string
}

// Member is one Raft server.
type Member struct {
	Name    string
	Address string
	Voter   bool
	Leader  bool
}

// notLeader builds the error a non-leader answers with, naming the leader.
func (n *Node) notLeader() error {
	addr, id := n.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// raftErr translates raft's errors into this package's.
func (n *Node) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return n.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, n.notLeader())
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrStopped
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return context.DeadlineExceeded
	}
	return err
}

// applyTimeout bounds how long raft may take, by the caller's deadline.
func (n *Node) applyTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return n.cfg.ApplyTimeout
}

// propose replicates one command and returns its result once it has been
// applied on this node (the leader).
func (n *Node) propose(ctx context.Context, data []byte) (*fsm.Result, error) {
	if !n.leading.Load() {
		return nil, n.notLeader()
	}
	f := n.raft.Apply(data, n.applyTimeout(ctx))
	if err := f.Error(); err != nil {
		return nil, n.raftErr(err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("server: unexpected apply response %T", f.Response())
	}
	return res, res.Err
}

// Grant creates a lease. id 0 lets the leader choose one. ttlMs below the
// minimum is raised to it; the result carries the effective TTL.
func (n *Node) Grant(ctx context.Context, id lessor.LeaseID, ttlMs int64, reqID uint64) (lessor.LeaseID, int64, error) {
	if id < 0 {
		return 0, 0, fmt.Errorf("%w: lease ID %d is negative", ErrInvalidArgument, id)
	}
	if ttlMs <= 0 || ttlMs > n.cfg.MaxTTL.Milliseconds() {
		return 0, 0, fmt.Errorf("%w: TTL %d ms is outside 1..%d", ErrInvalidArgument, ttlMs, n.cfg.MaxTTL.Milliseconds())
	}
	ttlMs = max(ttlMs, n.cfg.MinTTL.Milliseconds())
	if id == lessor.NoLease {
		id = lessor.LeaseID(rand.Int64N(math.MaxInt64-1) + 1)
	}
	data, err := fsm.EncodeGrant(reqID, id, ttlMs)
	if err != nil {
		return 0, 0, err
	}
	res, err := n.proposeGrouped(ctx, data)
	if err != nil {
		return 0, 0, err
	}
	n.metrics.grants.Inc()
	return res.LeaseID, res.TTL, nil
}

// Revoke deletes a lease and its items.
func (n *Node) Revoke(ctx context.Context, id lessor.LeaseID, reqID uint64) error {
	if chaosBuild && chaosBugIs(bugLeaderOnlyRevoke) {
		return n.chaosLocalRevoke(id)
	}
	data, err := fsm.EncodeRevoke(reqID, []lessor.LeaseID{id}, false)
	if err != nil {
		return err
	}
	_, err = n.proposeGrouped(ctx, data)
	return err
}

// renewLocal renews ids in the lessor and appends their results to out. A
// lease that carries a checkpointed remainder (or has a checkpoint in flight)
// gets a replicated reset first (rule 3), so that its acknowledgement cannot
// be undercut by that remainder on a later leader; the resets of one call
// travel in one Checkpoint command, because after a Promote every lease has
// been checkpointed once and is reset on its next renewal.
func (n *Node) renewLocal(ctx context.Context, ids []lessor.LeaseID, out []RenewResult) ([]RenewResult, error) {
	base := len(out)
	for _, id := range ids {
		out = append(out, RenewResult{ID: id})
	}
	n.lessor.RenewAll(out[base:])
	var resets []lessor.Checkpoint
	for _, r := range out[base:] {
		switch {
		case errors.Is(r.Err, lessor.ErrNotPrimary):
			return out[:base], n.notLeader()
		case errors.Is(r.Err, lessor.ErrResetRequired):
			resets = append(resets, lessor.Checkpoint{ID: r.ID})
		}
	}
	for attempt := 0; len(resets) > 0 && attempt < 3; attempt++ {
		data, err := fsm.EncodeCheckpoint(resets)
		if err != nil {
			return out[:base], err
		}
		if _, err := n.propose(ctx, data); err != nil {
			return out[:base], err
		}
		resets = resets[:0]
		for i := base; i < len(out); i++ {
			r := &out[i]
			if !errors.Is(r.Err, lessor.ErrResetRequired) {
				continue
			}
			r.TTL, r.Err = n.lessor.Renew(r.ID)
			switch {
			case errors.Is(r.Err, lessor.ErrNotPrimary):
				return out[:base], n.notLeader()
			case errors.Is(r.Err, lessor.ErrResetRequired):
				resets = append(resets, lessor.Checkpoint{ID: r.ID})
			}
		}
	}
	return out, nil
}

// Renew renews a lease and returns its TTL in ms. It answers only once
// leadership is confirmed for a time after the renewal, less the renewal
// lease that the next leader's extension covers (rule 2): by raft's recent
// quorum contacts, or else by a quorum round that concurrent renewals share.
func (n *Node) Renew(ctx context.Context, id lessor.LeaseID) (int64, error) {
	var buf [1]RenewResult
	res, err := n.RenewBatch(ctx, []lessor.LeaseID{id}, buf[:0])
	if err != nil {
		return 0, err
	}
	return res[0].TTL, res[0].Err
}

// RenewResult is the outcome of one renewal in RenewBatch.
type RenewResult = lessor.Renewal

// RenewBatch renews several leases with one leadership confirmation and
// appends one result per lease to out. If leadership cannot be confirmed the
// error is returned for the whole batch and nothing is appended.
func (n *Node) RenewBatch(ctx context.Context, ids []lessor.LeaseID, out []RenewResult) ([]RenewResult, error) {
	if !n.leading.Load() {
		return out, n.notLeader()
	}
	base := len(out)
	out, err := n.renewLocal(ctx, ids, out)
	if err != nil {
		return out, err
	}
	if chaosBuild && chaosBugIs(bugSkipVerify) {
		return out, nil
	}
	if err := n.confirmation().wait(ctx); err != nil {
		return out[:base], n.raftErr(err)
	}
	n.metrics.renewals.Add(float64(len(ids)))
	return out, nil
}

// confirmation returns what confirms the renewals made before this call:
// raft's recent quorum contacts, at once, if they vouch for leadership less
// than RenewLease before now (see renewLease), or else a verifier round that
// starts after this call.
func (n *Node) confirmation() *verifyRound {
	if n.renew.confirms(time.Now()) {
		n.metrics.confirmedByLease.Inc()
		return confirmedRound
	}
	n.metrics.confirmedByRound.Inc()
	return n.verifier.join()
}

// TransferLeadership hands leadership to another voter, for maintenance.
func (n *Node) TransferLeadership() error {
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return n.raftErr(err)
	}
	return nil
}

// linearize makes a read linearizable: note the commit index, confirm
// leadership with a quorum, and wait until that index has been applied.
func (n *Node) linearize(ctx context.Context) error {
	if !n.leading.Load() {
		return n.notLeader()
	}
	ci := n.raft.CommitIndex()
	if err := n.verifier.verify(ctx); err != nil {
		return n.raftErr(err)
	}
	return n.applied.wait(ctx, ci, n.raft.AppliedIndex)
}

func (n *Node) readBarrier(ctx context.Context, serializable bool) error {
	if serializable {
		return nil
	}
	return n.linearize(ctx)
}

// TimeToLive reads one lease.
func (n *Node) TimeToLive(ctx context.Context, id lessor.LeaseID, keys, serializable bool) (LeaseInfo, error) {
	if err := n.readBarrier(ctx, serializable); err != nil {
		return LeaseInfo{}, err
	}
	l := n.lessor.Lookup(id)
	if l == nil {
		return LeaseInfo{}, lessor.ErrLeaseNotFound
	}
	info := LeaseInfo{ID: id, GrantedTTL: l.TTL(), Remaining: l.Remaining()}
	if keys {
		info.Keys = l.Keys()
	}
	return info, nil
}

// Leases lists every lease, sorted by ID.
func (n *Node) Leases(ctx context.Context, serializable bool) ([]LeaseInfo, error) {
	if err := n.readBarrier(ctx, serializable); err != nil {
		return nil, err
	}
	ls := n.lessor.Leases()
	out := make([]LeaseInfo, len(ls))
	for i, l := range ls {
		out[i] = LeaseInfo{ID: l.ID, GrantedTTL: l.TTL(), Remaining: l.Remaining()}
	}
	return out, nil
}

// Attach attaches (or re-attaches) an item to a lease.
func (n *Node) Attach(ctx context.Context, leaseID lessor.LeaseID, key, value string, reqID uint64) (fsm.Item, error) {
	data, err := fsm.EncodeAttach(reqID, leaseID, key, value)
	if err != nil {
		return fsm.Item{}, err
	}
	res, err := n.propose(ctx, data)
	if err != nil {
		return fsm.Item{}, err
	}
	return res.Item, nil
}

// Detach detaches an item from the lease that holds it.
func (n *Node) Detach(ctx context.Context, leaseID lessor.LeaseID, key string, reqID uint64) error {
	data, err := fsm.EncodeDetach(reqID, leaseID, key)
	if err != nil {
		return err
	}
	_, err = n.propose(ctx, data)
	return err
}

// Get reads one item.
func (n *Node) Get(ctx context.Context, key string, serializable bool) (fsm.Item, error) {
	if err := n.readBarrier(ctx, serializable); err != nil {
		return fsm.Item{}, err
	}
	it, ok := n.fsm.Item(key)
	if !ok {
		return fsm.Item{}, lessor.ErrItemNotFound
	}
	return it, nil
}

// IsLeader reports whether this node leads and serves as leader.
func (n *Node) IsLeader() bool { return n.leading.Load() }

// StateHash is the hash of the replicated state this node has applied.
func (n *Node) StateHash() string { return n.fsm.StateHash() }

// AppliedIndex is the index of the last entry this node has applied.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// Status describes this node, with the hash of its replicated state (which
// costs a pass over the whole state).
func (n *Node) Status() Status {
	s := n.status()
	s.StateHash = n.fsm.StateHash()
	return s
}

// status is Status without the state hash.
func (n *Node) status() Status {
	addr, id := n.raft.LeaderWithID()
	return Status{
		Name:         n.cfg.Name,
		Role:         strings.ToLower(n.raft.State().String()),
		Leader:       string(id),
		LeaderAddr:   string(addr),
		Term:         n.raft.CurrentTerm(),
		AppliedIndex: n.raft.AppliedIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		LastIndex:    n.raft.LastIndex(),
	}
}

// Ready reports whether this node can serve: a leader is known, and this
// node has applied everything it knows to be committed (a leader: it has
// been promoted).
func (n *Node) Ready() error {
	_, id := n.raft.LeaderWithID()
	switch {
	case id == "":
		return errors.New("server: no leader")
	case string(id) == n.cfg.Name && !n.leading.Load():
		return errors.New("server: establishing leadership")
	case n.raft.AppliedIndex() < n.raft.CommitIndex():
		return fmt.Errorf("server: catching up (applied %d of %d)", n.raft.AppliedIndex(), n.raft.CommitIndex())
	}
	return nil
}

// Members lists the Raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.raftErr(err)
	}
	_, leader := n.raft.LeaderWithID()
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{Name: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader})
	}
	return out, nil
}
