package server

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/leasecluster/leasecluster/internal/dialtarget"
	"github.com/leasecluster/leasecluster/leasepb"
)

// watch notices, on every node, when this node is no longer in the
// configuration (removed) or back in it, and stops the membership work
// when the node stops.
//
// Removed: no leader talks to this node, and either its own configuration
// names other servers but not itself (a catching-up node replays old
// configurations without itself, but hears from the leader), or the leader
// it finds among the servers it knows leaves it out. The second case is
// common: raft's last, best-effort replication to a removed follower may
// never arrive, and such a node, still a voter in its own configuration,
// stands for election in vain (the members refuse its pre-votes).
func (m *membership) watch() {
	defer m.close()
	tick := time.NewTicker(removedPoll)
	defer tick.Stop()
	var leaderless, asked time.Time
	for {
		select {
		case <-m.stopC:
			return
		case <-tick.C:
		}
		conf, _, err := m.configuration()
		if err != nil {
			continue
		}
		removed := m.removed.Load()
		_, leader := m.rs.raft.LeaderWithID()
		switch {
		case leader != "":
			removed, leaderless = false, time.Time{}
		case len(conf.Servers) > 0 && find(conf, string(m.self)) == nil:
			removed = true
		case leaderless.IsZero():
			leaderless = time.Now()
		case time.Since(leaderless) > 8*m.liveness && time.Since(asked) > time.Second:
			asked = time.Now()
			if out, ok := m.leftOut(conf); ok {
				removed = out
			}
		}
		if removed == m.removed.Load() {
			continue
		}
		m.removed.Store(removed)
		if removed {
			m.log.Error("this node has been removed from the cluster: it serves no more (not ready, no leader-only calls; its elections are refused); to bring it back under this name, empty its data dir and start it with --join")
		} else {
			m.log.Info("this node is in the cluster's configuration again")
		}
		m.serving(!removed)
	}
}

// leftOut asks the servers of conf for the leader, and the leader whether
// this node is in its configuration; ok is false if no leader answered.
func (m *membership) leftOut(conf raft.Configuration) (out, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*peerStatusTimeout)
	defer cancel()
	ctx, stop := m.untilStop(ctx)
	defer stop()
	for _, s := range conf.Servers {
		if s.ID == m.self {
			continue
		}
		st, err := m.peers.status(ctx, string(s.Address))
		if err != nil || st.GetRole() != "leader" {
			continue
		}
		cc, err := m.peers.get(string(s.Address))
		if err != nil {
			return false, false
		}
		ms, err := leasepb.NewClusterClient(cc).Members(ctx, &leasepb.MembersRequest{})
		if err != nil {
			return false, false
		}
		for _, x := range ms.GetMembers() {
			if x.GetName() == string(m.self) {
				return false, true
			}
		}
		return true, true
	}
	return false, false
}

// close ends a promotion in flight and closes the connections to members.
func (m *membership) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancelPromotion("")
	m.peers.close()
}

// peerConns keeps one connection per member address, for reading members'
// status (promotion, Members).
type peerConns struct {
	dial []grpc.DialOption

	mu     sync.Mutex // guards conns and closed
	conns  map[string]*grpc.ClientConn
	closed bool
}

func (p *peerConns) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrStopped
	}
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(dialtarget.For(addr), p.dial...)
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = make(map[string]*grpc.ClientConn)
	}
	p.conns[addr] = cc
	return cc, nil
}

// status reads the status a member reports of itself.
func (p *peerConns) status(ctx context.Context, addr string) (*leasepb.StatusResponse, error) {
	cc, err := p.get(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	return leasepb.NewClusterClient(cc).Status(ctx, &leasepb.StatusRequest{})
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, cc := range p.conns {
		cc.Close()
	}
	p.conns = nil
}
