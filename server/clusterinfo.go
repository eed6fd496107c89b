package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
)

// Status describes this node.
type Status struct {
	Name         string
	Role         string // leader, follower, candidate, shutdown, or removed (no longer in the configuration)
	Leader       string // name of the known leader, "" if none
	LeaderAddr   string
	Term         uint64
	AppliedIndex uint64
	CommitIndex  uint64
	LastIndex    uint64
	StateHash    string // only when asked for: a pass over the whole state
	RaftLog      string // the raft log this node keeps: RaftLogWAL or RaftLogBoltDB
}

// Member is one Raft server.
type Member struct {
	Name    string
	Address string
	Voter   bool
	Leader  bool
	// AppliedIndex is the member's own, read from its Status (0 with
	// StatusError set when it could not be read).
	AppliedIndex uint64
	StatusError  string
	Promoting    bool // a non-voter the leader promotes once it has caught up
}

// clusterInfo answers what this node knows of itself and the cluster.
type clusterInfo struct {
	rs      *raftStack
	name    string
	leading func() bool
	fsm     *fsm.FSM
	members *membership
}

// status describes this node; withHash adds the hash of its replicated
// state, which costs a pass over the whole state.
func (c *clusterInfo) status(withHash bool) Status {
	addr, id := c.rs.raft.LeaderWithID()
	s := Status{
		Name:         c.name,
		Role:         c.role(),
		Leader:       string(id),
		LeaderAddr:   string(addr),
		Term:         c.rs.raft.CurrentTerm(),
		AppliedIndex: c.rs.raft.AppliedIndex(),
		CommitIndex:  c.rs.raft.CommitIndex(),
		LastIndex:    c.rs.raft.LastIndex(),
		RaftLog:      c.rs.logKind(),
	}
	if withHash {
		s.StateHash = c.fsm.StateHash()
	}
	return s
}

// role is raft's state, or "removed" once this node has noticed that it is
// no longer in the configuration (membership.watch).
func (c *clusterInfo) role() string {
	if c.members.removed.Load() {
		return "removed"
	}
	return strings.ToLower(c.rs.raft.State().String())
}

// ready reports whether this node can serve: a leader is known, and this
// node has applied everything it knows to be committed (a leader: it has
// been promoted).
func (c *clusterInfo) ready() error {
	_, id := c.rs.raft.LeaderWithID()
	switch {
	case c.members.removed.Load():
		return errors.New("server: removed from the cluster")
	case id == "":
		return errors.New("server: no leader")
	case string(id) == c.name && !c.leading():
		return errors.New("server: establishing leadership")
	case c.rs.raft.AppliedIndex() < c.rs.raft.CommitIndex():
		return fmt.Errorf("server: catching up (applied %d of %d)", c.rs.raft.AppliedIndex(), c.rs.raft.CommitIndex())
	}
	return nil
}

// listMembers lists the Raft configuration (the latest this node has), with
// each member's applied index as the member reports it in its Status: the
// leader's view of followers' progress stays inside raft, and a member's
// own word is what an operator compares (read in parallel, a second at
// most each).
func (c *clusterInfo) listMembers(ctx context.Context) ([]Member, error) {
	conf, _, err := c.members.configuration()
	if err != nil {
		return nil, err
	}
	_, leader := c.rs.raft.LeaderWithID()
	out := make([]Member, len(conf.Servers))
	var wg sync.WaitGroup
	for i, s := range conf.Servers {
		m := &out[i]
		*m = Member{Name: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader,
			Promoting: c.members.promoting(string(s.ID))}
		if m.Name == c.name {
			m.AppliedIndex = c.rs.raft.AppliedIndex()
			continue
		}
		wg.Go(func() {
			st, err := c.members.peers.status(ctx, m.Address)
			if err != nil {
				m.StatusError = err.Error()
				return
			}
			m.AppliedIndex = st.GetAppliedIndex()
		})
	}
	wg.Wait()
	return out, nil
}

// transferLeadership hands leadership to another voter, for maintenance.
func (c *clusterInfo) transferLeadership() error {
	if err := c.rs.raft.LeadershipTransfer().Error(); err != nil {
		return c.rs.err(err)
	}
	return nil
}
