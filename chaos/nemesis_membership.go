package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/internal/proctest"
)

// NemesisMembership removes a node from the cluster (the leader, in variant
// replace-leader: it hands leadership over first), kills it, empties its
// data dir and starts it again with --join: it is added back as a
// non-voter, catches up and is promoted (issue 21). The fault lasts until
// it is a voter again.
const NemesisMembership = "membership"

// membershipWait bounds how long a replaced node may take to become a voter
// again before the step reports a failure (the next steps run regardless).
const membershipWait = time.Minute

// scheduleMembership fills a membership step.
func scheduleMembership(s *Step, rng *rand.Rand) {
	s.Variant = []string{"replace-one", "replace-leader"}[rng.IntN(2)]
	s.Duration = time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
}

// membership returns the targets, apply and heal of a membership step.
func (ns *nemesis) membership(ctx context.Context, s Step, leader *NodeProc, shuffled []*NodeProc) ([]*NodeProc, func() error, func() error) {
	c := ns.c
	target := shuffled[0]
	if s.Variant == "replace-leader" {
		target = leader
	}
	apply := func() error {
		cl, err := client.New(ctx, c.Endpoints(), client.WithTLS(c.adminTLS()))
		if err != nil {
			return err
		}
		defer cl.Close()
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := cl.RemoveMember(rctx, target.Name, false); err != nil {
			return fmt.Errorf("remove-member %s: %w", target.Name, err)
		}
		c.Kill(target)
		if err := os.RemoveAll(target.m.DataDir); err != nil {
			return err
		}
		// From now on the node starts with --join (a later kill restarts it
		// so too: a node with data never bootstraps, and it is a voter).
		target.m.Daemon = proctest.NewDaemon(c.joinSpec(target))
		return c.Restart(target)
	}
	heal := func() error {
		if !target.Running() {
			if err := c.Restart(target); err != nil {
				return err
			}
		}
		return c.awaitVoter(ctx, target)
	}
	return []*NodeProc{target}, apply, heal
}

// joinSpec is n's command line to join the running cluster on an empty
// data dir: its serve flags with --join (the other nodes) in place of
// --initial-cluster.
func (c *Cluster) joinSpec(n *NodeProc) proctest.Spec {
	var others []string
	for _, o := range c.Nodes {
		if o != n {
			others = append(others, o.GRPCAddr)
		}
	}
	args := []string{"serve", "--name", n.Name, "--data-dir", n.m.DataDir, "--grpc-addr", n.GRPCAddr,
		"--http-addr", n.HTTPAddr, "--join", strings.Join(others, ","),
		"--election-timeout", c.cfg.Election.String(), "--heartbeat-timeout", c.cfg.Heartbeat.String()}
	if c.pki != nil {
		args = append(append(args, c.pki.flags()...), c.pki.nodeFlags(n.Name)...)
	}
	bin := c.cfg.Binary
	if c.net != nil {
		args = append([]string{"netns", "exec", c.net.ns(n.Name), bin}, args...)
		bin = "ip"
	}
	return proctest.Spec{Name: n.Name, Bin: bin, Args: args, Env: c.cfg.Env, Log: n.m.LogFile}
}

// awaitVoter waits until the cluster's members show n as a voter.
func (c *Cluster) awaitVoter(ctx context.Context, n *NodeProc) error {
	cl, err := client.New(ctx, c.Endpoints(), client.WithTLS(c.adminTLS()))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, membershipWait)
	defer cancel()
	for {
		ms, err := cl.Members(ctx)
		if err == nil {
			for _, m := range ms {
				if m.GetName() == n.Name && m.GetVoter() {
					return nil
				}
			}
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return errors.Join(fmt.Errorf("chaos: %s is not a voter again within %v", n.Name, membershipWait), err)
		}
	}
}
