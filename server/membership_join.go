package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/leasecluster/leasecluster/client"
)

// ParseJoin parses serve's --join: "host:port,host:port".
func ParseJoin(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(part); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("server: --join entry %q is not host:port", part)
		}
		out = append(out, part)
	}
	return out, nil
}

// newMembership builds the membership job of n.
func (n *Node) newMembership(self raft.ServerID, leading func() bool) *membership {
	return &membership{rs: &n.rs, self: self, addr: n.cfg.AdvertiseAddr, log: n.log.Named("membership"),
		leading: leading, timeout: n.cfg.ApplyTimeout, liveness: n.cfg.LeaderLeaseTimeout,
		peers: &peerConns{dial: n.dial}, stopC: n.stopC,
		serving: func(ok bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			n.health.SetServingStatus("", st)
		}}
}

// joinOrBootstrap bootstraps a new cluster as raftStack.bootstrap does,
// unless the node joins an existing one: Config.Join, or (on an empty data
// dir) the initial cluster already running, found by runningCluster, whose
// members then become the node's Join. It reports whether the data dir held
// Raft state.
func (n *Node) joinOrBootstrap() (bool, error) {
	existing, err := n.rs.hasState()
	if err != nil {
		return false, err
	}
	cfg := &n.cfg // startMembership reads the Join decided here
	fresh := !existing && len(cfg.InitialCluster) > 0
	switch {
	case fresh && len(cfg.Join) > 0:
		n.log.Warn("--join is set: --initial-cluster is ignored, this node joins the existing cluster")
	case fresh:
		if peers, leader := n.runningCluster(*cfg); leader != "" {
			// Bootstrapping would make this node a voter again at once,
			// without the votes and entries it may have promised before
			// its data dir was lost: it joins as a replacement.
			n.log.Warn("the data dir is empty, but the initial cluster is already running: joining it (as --join would) instead of bootstrapping",
				"leader", leader, "endpoints", strings.Join(peers, ","))
			cfg.Join = peers
		}
	}
	if len(cfg.Join) == 0 {
		return existing, n.rs.bootstrap(*cfg)
	}
	n.members.holdVotes.Store(!existing) // before the gRPC server serves
	return existing, nil
}

// runningCluster asks the other members of cfg.InitialCluster, all at once
// and for at most an election timeout, whether they already run a cluster:
// it returns their addresses and the leader the first to answer names, or
// "" if none names one (none answered in time, or none has a leader yet, as
// when the whole cluster starts). A node with an empty data dir that finds
// one running is either a voter whose data dir was lost or one that starts
// later than the others; either way it must join, not bootstrap. This is
// etcd's "member has already been bootstrapped" check, made a join instead
// of a refusal.
func (n *Node) runningCluster(cfg Config) (peers []string, leader string) {
	for _, p := range cfg.InitialCluster {
		if p.Name != cfg.Name {
			peers = append(peers, p.Address)
		}
	}
	if len(peers) == 0 {
		return nil, ""
	}
	opts := []client.Option{client.WithRequestTimeout(cfg.ElectionTimeout)}
	if n.tls != nil {
		opts = append(opts, client.WithTLS(n.tls.PeerTLS())) // a member, acting for itself
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ElectionTimeout)
	defer cancel()
	c, err := client.New(ctx, peers, opts...)
	if err != nil {
		return peers, ""
	}
	defer c.Close()
	leaders := make(chan string, len(peers))
	for _, p := range peers {
		go func() {
			st, err := c.StatusOf(ctx, p)
			if err != nil || st.GetRole() == "removed" {
				leaders <- ""
				return
			}
			leaders <- st.GetLeader()
		}()
	}
	for range peers {
		if l := <-leaders; l != "" {
			return peers, l
		}
	}
	return peers, ""
}

// voteGate refuses vote requests (the transport's Config.VoteGate) while
// this node, started on an empty data dir, joins: until the cluster has made
// it a voter again (rule 12). Until the leader has removed the voter of its
// name, the others may still count that voter's vote, and hashicorp/raft
// would grant it, first with an empty configuration, then with the old ones
// it catches up on; a vote from a voter whose log was lost could elect a
// candidate lacking entries it had acknowledged. Every other node votes as
// raft decides: a node that was promoted but has not yet heard so must
// still vote, or a majority that includes it could elect no one.
func (m *membership) voteGate() error {
	if m.holdVotes.Load() {
		return fmt.Errorf("server: %s started on an empty data dir and is joining: it does not vote until the cluster has made it a voter", m.self)
	}
	return nil
}

// startMembership runs the membership watch and, with Config.Join, the join.
func (n *Node) startMembership(existing bool) {
	n.running.Go(n.members.watch)
	if len(n.cfg.Join) > 0 {
		var tlsCfg *tls.Config
		if n.tls != nil {
			tlsCfg = n.tls.PeerTLS()
		}
		n.running.Go(func() { n.members.join(n.cfg.Join, !existing, tlsCfg) })
	}
}

// hasState reports whether the data dir holds Raft state (a node that has
// none joins as a newcomer: serve --join asks for a replacement).
func (rs *raftStack) hasState() (bool, error) {
	existing, err := raft.HasExistingState(rs.logs, rs.bolt, rs.snaps)
	if err != nil {
		return false, fmt.Errorf("server: inspect raft state: %w", err)
	}
	return existing, nil
}

// join asks the cluster at endpoints to add this node (serve --join) until
// it sees itself a voter in its own configuration. The first request of a
// node that started with no Raft state says so (replace), so that a voter
// of the same name, whose data is gone, is removed and added again as a
// non-voter. Afterwards it asks again every joinRetry while it is not a
// voter: a new leader does not know of a promotion its predecessor watched,
// and asking again changes nothing on a leader that does. A node that
// started with Raft state and is no longer in the configuration has been
// removed: it does not ask.
func (m *membership) join(endpoints []string, fresh bool, tlsCfg *tls.Config) {
	opts := []client.Option{client.WithRequestTimeout(5 * time.Second)}
	if tlsCfg != nil {
		opts = append(opts, client.WithTLS(tlsCfg)) // a member, acting for itself
	}
	c, err := client.New(context.Background(), endpoints, opts...)
	if err != nil {
		m.log.Error("cannot join: bad --join", "error", err)
		return
	}
	defer c.Close()
	ctx, cancel := m.untilStop(context.Background())
	defer cancel()
	asked := false
	tick := time.NewTicker(joinRetry)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		if !fresh && !asked {
			if conf, _, err := m.configuration(); err == nil && len(conf.Servers) > 0 && find(conf, string(m.self)) == nil {
				m.log.Error("not joining: this node's data dir says it was removed from the cluster; empty its data dir to join again")
				return
			}
		}
		if asked || !fresh {
			if voter, err := m.isVoter(ctx, c); err == nil && voter {
				m.holdVotes.Store(false)
				m.log.Info("joined the cluster: this node is a voter")
				return
			}
		}
		actx, acancel := context.WithTimeout(ctx, 3*joinRetry)
		_, err := c.AddMember(actx, string(m.self), m.addr, client.MemberOptions{Replace: fresh && !asked})
		acancel()
		switch {
		case err == nil && !asked:
			m.log.Info("asked to join: added as a non-voter; the leader promotes this node once it has caught up", "endpoints", endpoints)
			asked = true
		case err != nil && ctx.Err() == nil:
			m.log.Warn("asking to join failed; asking again", "endpoints", endpoints, "error", err)
		}
	}
}

// isVoter asks the cluster whether this node is a voter.
func (m *membership) isVoter(ctx context.Context, c *client.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, joinRetry)
	defer cancel()
	ms, err := c.Members(ctx)
	if err != nil {
		return false, err
	}
	for _, x := range ms {
		if x.GetName() == string(m.self) {
			return x.GetVoter(), nil
		}
	}
	return false, nil
}
