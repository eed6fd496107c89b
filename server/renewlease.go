package server

import (
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/transport"
)

// raftView is what the renewal lease reads of raft (*raft.Raft has it).
type raftView interface {
	State() raft.RaftState
	CurrentTerm() uint64
	GetConfiguration() raft.ConfigurationFuture
}

// renewLease decides whether a renewal may be acknowledged on the strength
// of the quorum contacts raft's own heartbeats and replication keep making,
// instead of waiting for a new VerifyLeader round (rule 2; DESIGN.md,
// "Renewals").
//
// The argument: a voter that answered our term-T AppendEntries in term T
// had not voted in a later term when it read its term, after the request's
// send time (votes are persisted, so a restart changes nothing). A leader
// of a later term needs votes from a quorum, which overlaps every quorum of
// contacts, so it is elected after t_q, the oldest send time among the
// newest quorum of contacts (this node counts itself while raft says it
// leads term T). A renewal made before now < t_q + dur was therefore made
// less than dur after any later leader was elected, and that leader's
// Promote adds Extend to every lease it has not seen checkpointed: the
// acknowledged lease outlives s + TTL as long as dur <= Extend. Config
// caps dur at Extend/2, so half the extension still absorbs clock drift.
//
// Leases with a checkpointed remainder never get here unconfirmed: their
// renewals replicate a reset first, and a commit needs a quorum anyway.
type renewLease struct {
	dur     time.Duration // 0: never; every renewal waits for a round
	self    raft.ServerID
	raft    raftView
	contact func(raft.ServerAddress) (transport.Contact, bool)
}

// confirms reports whether leadership is confirmed, at now, for renewals
// made before now.
func (l *renewLease) confirms(now time.Time) bool {
	if l.dur <= 0 {
		return false
	}
	// Read the term on both sides of the state: equal terms mean raft led
	// this very term when the state was read.
	term := l.raft.CurrentTerm()
	if l.raft.State() != raft.Leader || l.raft.CurrentTerm() != term {
		return false
	}
	f := l.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	var sent []time.Time // newest contacts of this term, one per other voter
	voters, selfVoter := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID == l.self {
			selfVoter = true
			continue
		}
		if c, ok := l.contact(s.Address); ok && c.Term == term {
			sent = append(sent, c.Sent)
		}
	}
	if !selfVoter {
		return false
	}
	need := voters/2 + 1 - 1 // a quorum, less this node
	if need == 0 {
		return true // a single voter: nobody else can be elected
	}
	if len(sent) < need {
		return false
	}
	// The need-th newest contact is the oldest of the newest quorum.
	slices.SortFunc(sent, func(a, b time.Time) int { return b.Compare(a) })
	return now.Sub(sent[need-1]) < l.dur
}
