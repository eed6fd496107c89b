package server

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// Promotion: a member added with --join or add-member joins as a non-voter;
// the leader makes it a voter once it has caught up.

// promotion is a non-voter the leader promotes once it has caught up.
type promotion struct {
	name, addr string
	cancel     context.CancelFunc
	done       chan struct{}
}

// startPromotion hands the change in flight to a watcher that promotes name
// once it has caught up, and ends the change then.
func (m *membership) startPromotion(name, addr string) error {
	ctx, cancel := context.WithCancel(context.Background())
	p := &promotion{name: name, addr: addr, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		cancel()
		return ErrStopped
	}
	m.promote, m.busy, m.committing = p, "promoting "+name+" once it has caught up", false
	m.mu.Unlock()
	go m.watchPromotion(ctx, p)
	return nil
}

// cancelPromotion stops the promotion of name, if one runs, and waits for it.
func (m *membership) cancelPromotion(name string) {
	m.mu.Lock()
	p := m.promote
	m.mu.Unlock()
	if p != nil && (name == "" || p.name == name) {
		p.cancel()
		<-p.done
	}
}

// watchPromotion reads the member's own status until its applied index is
// within catchUpLag of the leader's commit index, then makes it a voter
// (etcd's learners, Consul's autopilot: the new voter never holds up a
// quorum while it catches up, from a snapshot if the log was compacted).
func (m *membership) watchPromotion(ctx context.Context, p *promotion) {
	defer func() {
		p.cancel()
		m.mu.Lock()
		m.promote = nil
		m.mu.Unlock()
		m.end()
		close(p.done)
	}()
	tick := time.NewTicker(promotePoll)
	defer tick.Stop()
	heard := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.stopC:
			return
		case <-tick.C:
		}
		if !m.leading() {
			m.log.Warn("leadership lost while a member caught up; the next leader promotes it when it asks again (serve --join does; else run cluster add-member again)", "member", p.name)
			return
		}
		commit := m.rs.raft.CommitIndex()
		st, err := m.peers.status(ctx, p.addr)
		if err != nil {
			if time.Since(heard) > promoteGiveUp {
				m.log.Warn("giving up the promotion: the member has not answered", "member", p.name, "for", promoteGiveUp, "error", err)
				return
			}
			continue
		}
		heard = time.Now()
		if st.GetLeader() != string(m.self) || st.GetAppliedIndex()+catchUpLag < commit {
			continue
		}
		conf, idx, err := m.configuration()
		if err != nil {
			continue
		}
		cur := find(conf, p.name)
		if cur == nil || cur.Suffrage == raft.Voter {
			return
		}
		m.committingNow()
		if err := m.rs.raft.AddVoter(raft.ServerID(p.name), cur.Address, idx, m.timeout).Error(); err != nil {
			m.log.Warn("promotion failed; retrying", "member", p.name, "error", err)
			continue
		}
		m.log.Info("promoted a caught-up member to voter", "member", p.name, "applied_index", st.GetAppliedIndex(), "commit_index", commit)
		return
	}
}
