package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
)

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
	StateHash    string // only when asked for: a pass over the whole state
	RaftLog      string // the raft log this node keeps: RaftLogWAL or RaftLogBoltDB
}

// Member is one Raft server.
type Member struct {
	Name    string
	Address string
	Voter   bool
	Leader  bool
}

// clusterInfo answers what this node knows of itself and the cluster.
type clusterInfo struct {
	rs      *raftStack
	name    string
	leading func() bool
	fsm     *fsm.FSM
}

// status describes this node; withHash adds the hash of its replicated
// state, which costs a pass over the whole state.
func (c *clusterInfo) status(withHash bool) Status {
	addr, id := c.rs.raft.LeaderWithID()
	s := Status{
		Name:         c.name,
		Role:         strings.ToLower(c.rs.raft.State().String()),
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

// ready reports whether this node can serve: a leader is known, and this
// node has applied everything it knows to be committed (a leader: it has
// been promoted).
func (c *clusterInfo) ready() error {
	_, id := c.rs.raft.LeaderWithID()
	switch {
	case id == "":
		return errors.New("server: no leader")
	case string(id) == c.name && !c.leading():
		return errors.New("server: establishing leadership")
	case c.rs.raft.AppliedIndex() < c.rs.raft.CommitIndex():
		return fmt.Errorf("server: catching up (applied %d of %d)", c.rs.raft.AppliedIndex(), c.rs.raft.CommitIndex())
	}
	return nil
}

// members lists the Raft configuration.
func (c *clusterInfo) members() ([]Member, error) {
	f := c.rs.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, c.rs.err(err)
	}
	_, leader := c.rs.raft.LeaderWithID()
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{Name: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader})
	}
	return out, nil
}

// transferLeadership hands leadership to another voter, for maintenance.
func (c *clusterInfo) transferLeadership() error {
	if err := c.rs.raft.LeadershipTransfer().Error(); err != nil {
		return c.rs.err(err)
	}
	return nil
}
