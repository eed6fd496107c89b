package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// addNode starts a node outside the initial cluster with an empty data dir,
// listening on addr ("" for a new port), joining through join (none: it
// waits to be added). It returns the node's index in c.
func (c *testCluster) addNode(name, addr string, join []string) int {
	c.t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := c.cfgs[0]
	cfg.Name, cfg.DataDir, cfg.GRPCAddr, cfg.AdvertiseAddr = name, c.t.TempDir(), lis.Addr().String(), ""
	cfg.InitialCluster, cfg.Join = nil, join
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: name, Level: testLogLevel, Output: testWriter{c.t}})
	n, err := NewWithListener(cfg, lis)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, old := range c.cfgs {
		if old.Name == name && c.nodes[i] == nil {
			c.cfgs[i], c.nodes[i] = cfg, n
			return i
		}
	}
	c.cfgs = append(c.cfgs, cfg)
	c.nodes = append(c.nodes, n)
	return len(c.nodes) - 1
}

// suffrage is name's place in n's latest configuration: "voter",
// "non-voter" or "" (absent).
func suffrage(n *Node, name string) string {
	conf, _, err := n.members.configuration()
	if err != nil {
		return "?"
	}
	s := find(conf, name)
	switch {
	case s == nil:
		return ""
	case s.Suffrage == raft.Voter:
		return "voter"
	}
	return "non-voter"
}

// awaitSuffrage waits until the leader's configuration has name as want.
func (c *testCluster) awaitSuffrage(name, want string, timeout time.Duration) {
	c.t.Helper()
	err := eventually(timeout, func() error {
		_, ld := c.leader()
		if got := suffrage(ld, name); got != want {
			return fmt.Errorf("%s is %q in the leader's configuration, want %q", name, got, want)
		}
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// awaitRole waits until n reports role.
func awaitRole(t *testing.T, n *Node, role string) {
	t.Helper()
	err := eventually(15*time.Second, func() error {
		if got := n.info.status(false).Role; got != role {
			return fmt.Errorf("%s reports role %q, want %q", n.Name(), got, role)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// memberClient is a client of every running node of c.
func memberClient(t *testing.T, c *testCluster) *client.Client {
	t.Helper()
	var eps []string
	for _, n := range c.running() {
		if n != nil {
			eps = append(eps, n.Addr())
		}
	}
	cl, err := client.New(context.Background(), eps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestMemberJoinFromSnapshot: a node started with --join on an empty data
// dir, after the leader compacted its log, is added as a non-voter,
// installs a snapshot, and is promoted only once it has caught up; it then
// holds the same state as the others.
func TestMemberJoinFromSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold, cfg.TrailingLogs, cfg.SnapshotInterval = 64, 16, 50*time.Millisecond
	})
	_, ld := c.leader()
	const leases = 300
	for range leases { // one entry each: group commit would batch concurrent grants
		if _, _, err := ld.ops.grant(ctxT(t), 0, time.Hour.Milliseconds(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := eventually(15*time.Second, func() error {
		if snaps, err := ld.rs.snaps.List(); err != nil || len(snaps) == 0 {
			return fmt.Errorf("no snapshot yet (%v)", err)
		}
		if first, _ := ld.rs.logs.FirstIndex(); first <= 1 {
			return errors.New("log not compacted yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	i := c.addNode("n4", "", []string{c.node(0).Addr(), c.node(1).Addr()})
	n4 := c.node(i)
	c.awaitSuffrage("n4", "non-voter", 15*time.Second)
	_, ld = c.leader()
	_, addedAt, _ := ld.members.configuration()
	// Sample n4 until it is a voter: at that moment it must have applied
	// (nearly) everything up to the entry that added it.
	var appliedAtPromotion uint64
	if err := eventually(30*time.Second, func() error {
		applied := n4.rs.raft.AppliedIndex()
		if suffrage(ld, "n4") != "voter" {
			return errors.New("n4 not yet a voter")
		}
		appliedAtPromotion = applied
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	joined := time.Since(start)
	if appliedAtPromotion+catchUpLag < addedAt {
		t.Fatalf("n4 promoted with applied index %d, far below the index %d that added it", appliedAtPromotion, addedAt)
	}
	if got := n4.rs.raft.Stats()["last_snapshot_index"]; got == "0" || got == "" {
		t.Fatalf("n4 caught up without a snapshot (last_snapshot_index %q)", got)
	}
	c.converge()
	t.Logf("n4 joined (snapshot install, promotion) in %v with %d leases", joined, leases)
	cl := memberClient(t, c)
	if err := eventually(5*time.Second, func() error { // the answering node may not have the promotion yet
		ms, err := cl.Members(ctxT(t))
		if err != nil || len(ms) != 4 {
			return fmt.Errorf("members: %v %v", ms, err)
		}
		for _, m := range ms {
			if !m.GetVoter() || m.GetAppliedIndex() == 0 || m.GetStatusError() != "" {
				return fmt.Errorf("member %v: want a voter with its applied index", m)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestMemberAddRemoveReplace: add-member of a node that waits to be added,
// idempotent retries, one change at a time, removal of a follower (which
// reports removed), and the replacement of a voter by an empty node under
// the same name and address.
func TestMemberAddRemoveReplace(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	cl := memberClient(t, c)
	ctx := ctxT(t)
	i4 := c.addNode("n4", "", nil)
	n4 := c.node(i4)
	if _, err := cl.AddMember(ctx, "n4", n4.Addr(), client.MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	c.awaitSuffrage("n4", "voter", 15*time.Second)
	if _, err := cl.AddMember(ctx, "n4", n4.Addr(), client.MemberOptions{}); err != nil {
		t.Fatalf("adding a voter again: %v", err)
	}
	c.converge()

	// A member that never answers stays a non-voter waiting for promotion;
	// meanwhile every other change is refused.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	if _, err := cl.AddMember(ctx, "n5", deadAddr, client.MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	err = cl.RemoveMember(ctx, "n4", false)
	if !errors.Is(err, client.ErrMembershipRefused) || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("a second change while n5 catches up: %v, want refused as in progress", err)
	}
	if _, err := cl.AddMember(ctx, "n5", deadAddr, client.MemberOptions{}); err != nil {
		t.Fatalf("asking again for the promotion in flight: %v", err)
	}
	ms, err := cl.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.GetName() == "n5" && (m.GetVoter() || !m.GetPromoting() || m.GetStatusError() == "") {
			t.Fatalf("n5: %v, want a non-voter being promoted whose status cannot be read", m)
		}
	}
	if err := cl.RemoveMember(ctx, "n5", false); err != nil {
		t.Fatalf("removing the member being promoted: %v", err)
	}
	c.awaitSuffrage("n5", "", 5*time.Second)
	if err := cl.RemoveMember(ctx, "n5", false); !errors.Is(err, client.ErrMemberNotFound) {
		t.Fatalf("removing an unknown member: %v, want ErrMemberNotFound", err)
	}

	// Remove a follower: it says so and stops serving.
	li, _ := c.leader()
	victim := (li + 1) % 4
	vn := c.node(victim)
	if err := cl.RemoveMember(ctx, vn.Name(), false); err != nil {
		t.Fatal(err)
	}
	c.awaitSuffrage(vn.Name(), "", 5*time.Second)
	awaitRole(t, vn, "removed")
	if err := vn.info.ready(); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("a removed node is ready: %v", err)
	}
	st, err := cl.StatusOf(ctx, vn.Addr())
	if err != nil || st.GetRole() != "removed" {
		t.Fatalf("gRPC status of the removed node: %v %v", st, err)
	}

	// Replace it: same name and address, empty data dir, --join.
	addr := vn.Addr()
	c.kill(victim)
	c.addNode(vn.Name(), addr, []string{c.node(li).Addr()})
	c.awaitSuffrage(vn.Name(), "voter", 20*time.Second)

	// Replace a voter that was never removed (its disk was lost).
	li, _ = c.leader()
	other := (li + 2) % 4
	on := c.node(other)
	name, addr := on.Name(), on.Addr()
	c.kill(other)
	c.addNode(name, addr, []string{c.node(li).Addr()})
	c.awaitSuffrage(name, "voter", 20*time.Second)
	hash := c.converge()
	ms, err = cl.Members(ctx)
	if err != nil || len(ms) != 4 {
		t.Fatalf("members after the replacements: %v %v", ms, err)
	}
	t.Logf("4 voters, state hash %.8s", hash)
}

// TestMemberRemoveLeader: removing the leader hands leadership over first;
// the old leader reports removed and the others go on.
func TestMemberRemoveLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	li, ld := c.leader()
	cl := memberClient(t, c)
	ctx := ctxT(t)
	id, _, err := ld.ops.grant(ctx, 0, time.Hour.Milliseconds(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveMember(ctx, ld.Name(), false); err != nil {
		t.Fatal(err)
	}
	awaitRole(t, ld, "removed")
	c.setNode(li, nil) // out of the cluster: leader() and converge() look at the others
	defer ld.Abort()
	_, nl := c.leader()
	if suffrage(nl, ld.Name()) != "" {
		t.Fatalf("%s still in the configuration", ld.Name())
	}
	if _, err := nl.reader.timeToLive(ctx, id, false, false); err != nil {
		t.Fatalf("lease granted before the removal: %v", err)
	}
	if _, _, err := nl.ops.grant(ctx, 0, time.Hour.Milliseconds(), 0); err != nil {
		t.Fatalf("the remaining two do not serve: %v", err)
	}
	c.converge()
}

// TestMemberRemoveRefusedWithoutQuorum: with one follower down, removing the
// other would leave one live voter of two: refused; removing the dead one
// is fine. A transfer goes to the voter named.
func TestMemberRemoveRefusedWithoutQuorum(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.converge() // every follower in contact before one goes down
	li, _ := c.leader()
	cl := memberClient(t, c)
	ctx := ctxT(t)
	down, up := (li+1)%3, (li+2)%3
	downName, upName := c.node(down).Name(), c.node(up).Name()
	downAddr := c.node(down).Addr()
	c.kill(down)
	// Wait until the leader sees the dead node as dead: no contact within
	// the liveness window (the leader lease).
	ld := c.node(li)
	if err := eventually(5*time.Second, func() error {
		if ct, ok := ld.rs.trans.LastContact(raft.ServerAddress(downAddr)); ok && time.Since(ct.Sent) < ld.members.liveness {
			return errors.New("the dead node still counts as alive")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	err := cl.RemoveMember(ctx, upName, false)
	if !errors.Is(err, client.ErrMembershipRefused) || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("removing %s with %s down: %v, want refused for quorum", upName, downName, err)
	}
	if s := suffrage(c.node(li), upName); s != "voter" {
		t.Fatalf("%s is %q after a refused removal", upName, s)
	}
	if err := cl.RemoveMember(ctx, downName, false); err != nil {
		t.Fatalf("removing the dead member: %v", err)
	}
	leader, _, err := cl.TransferLeader(ctx, upName)
	if err != nil || leader != upName {
		t.Fatalf("transfer to %s: %q %v", upName, leader, err)
	}
	if _, nl := c.leaderOtherThan(ld); nl.Name() != upName {
		t.Fatalf("%s leads after a transfer to %s", nl.Name(), upName)
	}
}

// TestMemberHTTPRoutes: the membership routes of the HTTP gateway, reached
// through a follower.
func TestMemberHTTPRoutes(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	c.leader()
	c.converge()
	li, _ := c.leader()
	base := "http://" + c.node((li+1)%3).HTTPAddr()
	do := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, resp.StatusCode, out, want)
		}
		return out
	}
	ms := do("GET", "/v1/members", "", 200)["members"].([]any)
	if len(ms) != 3 || ms[0].(map[string]any)["applied_index"].(float64) == 0 {
		t.Fatalf("members: %v", ms)
	}
	i4 := c.addNode("n4", "", nil)
	do("POST", "/v1/members", `{"name":"n4","address":"`+c.node(i4).Addr()+`","non_voter":true}`, 200)
	c.awaitSuffrage("n4", "non-voter", 5*time.Second)
	do("POST", "/v1/members", `{"name":"n4"}`, 400)
	do("POST", "/v1/members", `{"name":"n4","address":"x:1","extra":1}`, 400)
	do("DELETE", "/v1/members/nobody", "", 404)
	do("DELETE", "/v1/members/n4?force=maybe", "", 400)
	do("DELETE", "/v1/members/n4", "", 200)
	c.awaitSuffrage("n4", "", 5*time.Second)
	target := c.node((li + 2) % 3).Name()
	if got := do("POST", "/v1/leader/transfer", `{"name":"`+target+`"}`, 200)["leader"]; got != target {
		t.Fatalf("transfer answered leader %v, want %s", got, target)
	}
	do("POST", "/v1/leader/transfer", "", 200)
}

// TestMemberChangesNeedAnAdminWithTLS: with mutual TLS, a client that is not
// an admin may read the members but not change them.
func TestMemberChangesNeedAnAdminWithTLS(t *testing.T) {
	c, p := newTLSCluster(t)
	_, ld := c.leader()
	ctx := ctxT(t)
	workload := leasepb.NewClusterClient(p.dialTLS(ld.Addr(), p.clientCA, "workload", time.Time{}, time.Time{}))
	if _, err := workload.Members(ctx, &leasepb.MembersRequest{}); err != nil {
		t.Fatalf("members for a client: %v", err)
	}
	_, err := workload.AddMember(ctx, &leasepb.AddMemberRequest{Name: "n4", Address: "127.0.0.1:1"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("add-member by a client: %v, want PermissionDenied", err)
	}
	if _, err := workload.RemoveMember(ctx, &leasepb.RemoveMemberRequest{Name: "n1"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("remove-member by a client: %v, want PermissionDenied", err)
	}
	if _, err := workload.TransferLeader(ctx, &leasepb.TransferLeaderRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("transfer-leader by a client: %v, want PermissionDenied", err)
	}
	if suffrage(ld, "n4") != "" {
		t.Fatal("a refused add-member changed the configuration")
	}
	admin := leasepb.NewClusterClient(p.dialTLS(ld.Addr(), p.clientCA, "admin", time.Time{}, time.Time{}))
	if _, err := admin.TransferLeader(ctx, &leasepb.TransferLeaderRequest{}); err != nil {
		t.Fatalf("transfer-leader by an admin: %v", err)
	}
}
