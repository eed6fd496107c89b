package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrNetwork is returned when the namespaces, bridge or nftables rules of a
// run cannot be set up.
var ErrNetwork = errors.New("chaos: network setup failed")

// network is the private network of a root-mode run: a bridge in a hub
// namespace, the harness's address 10.77.<subnet>.1/24 on a veth into it
// and, per node, a network namespace joined to it by a veth pair. Partitions are nftables rules inside the nodes'
// namespaces, so deleting a namespace also deletes its rules, and the
// host's own firewall is never touched.
type network struct {
	prefix string // interface and namespace name prefix, unique per run
	subnet int    // third octet of 10.77.x.0/24
	nodes  []string
	made   []func() error // teardown steps, run in reverse
}

// chaosTable is the nftables table the harness owns in each namespace.
const chaosTable = "leasechaos"

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s %s: %v: %s", ErrNetwork, name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// ensureTools installs iproute2 and nftables with apt-get when missing.
func ensureTools(ctx context.Context) error {
	_, ipErr := exec.LookPath("ip")
	_, nftErr := exec.LookPath("nft")
	if ipErr == nil && nftErr == nil {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%w: ip or nft missing and no apt-get to install them", ErrNetwork)
	}
	if err := run(ctx, "apt-get", "update", "-q"); err != nil {
		return err
	}
	return run(ctx, "apt-get", "install", "-y", "-q", "iproute2", "nftables")
}

func (n *network) bridge() string        { return n.prefix + "br" } // the harness end of the hub link
func (n *network) hub() string           { return n.prefix + "-hub" }
func (n *network) ns(node string) string { return n.prefix + "-" + node }
func (n *network) veth(i int) string     { return fmt.Sprintf("%sv%d", n.prefix, i) }

// IP is a node's address; index 0 is the bridge (the harness's side).
func (n *network) ip(i int) string { return fmt.Sprintf("10.77.%d.%d", n.subnet, 10+i) }

func (n *network) gateway() string { return fmt.Sprintf("10.77.%d.1", n.subnet) }

func newNetwork(ctx context.Context, nodes []string) (*network, error) {
	if err := ensureTools(ctx); err != nil {
		return nil, err
	}
	pid := os.Getpid()
	subnet, err := freeSubnet(ctx, 20+pid%200)
	if err != nil {
		return nil, err
	}
	n := &network{prefix: fmt.Sprintf("lc%d", pid), subnet: subnet, nodes: nodes}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	// The bridge lives in a hub namespace of its own: a bridge in the root
	// namespace would pass its frames through the host's FORWARD chain
	// (br_netfilter), which on docker hosts drops them. The harness reaches
	// the bridge through one more veth pair.
	hub, br := n.hub(), "br0"
	if err := run(ctx, "ip", "netns", "add", hub); err != nil {
		return nil, err
	}
	n.made = append(n.made, func() error { return run(context.Background(), "ip", "netns", "del", hub) })
	if err := run(ctx, "ip", "link", "add", n.bridge(), "type", "veth", "peer", "name", "up0", "netns", hub); err != nil {
		return nil, err
	}
	n.made = append(n.made, func() error {
		_ = run(context.Background(), "ip", "link", "del", n.bridge())
		return nil
	})
	for _, s := range [][]string{
		{"-n", hub, "link", "add", br, "type", "bridge"},
		{"-n", hub, "link", "set", br, "up"},
		{"-n", hub, "link", "set", "up0", "master", br},
		{"-n", hub, "link", "set", "up0", "up"},
		{"addr", "add", n.gateway() + "/24", "dev", n.bridge()},
		{"link", "set", n.bridge(), "up"},
	} {
		if err := run(ctx, "ip", s...); err != nil {
			return nil, err
		}
	}
	for i, name := range nodes {
		ns, veth := n.ns(name), n.veth(i+1)
		if err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		n.made = append(n.made, func() error { return run(context.Background(), "ip", "netns", "del", ns) })
		// The pair is made in the hub: one end stays there on the bridge,
		// the other moves into the node's namespace as eth0.
		if err := run(ctx, "ip", "-n", hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return nil, err
		}
		for _, s := range [][]string{
			{"-n", hub, "link", "set", veth, "master", br},
			{"-n", hub, "link", "set", veth, "up"},
			{"-n", ns, "addr", "add", n.ip(i+1) + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := run(ctx, "ip", s...); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return n, nil
}

// freeSubnet returns the first 10.77.x.0/24 from x = start on that no
// interface of this host uses, so that concurrent runs do not collide.
func freeSubnet(ctx context.Context, start int) (int, error) {
	out, err := exec.CommandContext(ctx, "ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("%w: ip addr: %v", ErrNetwork, err)
	}
	for i := range 230 {
		x := 20 + (start-20+i)%230
		if !strings.Contains(string(out), fmt.Sprintf(" 10.77.%d.", x)) {
			return x, nil
		}
	}
	return 0, fmt.Errorf("%w: no free 10.77.x.0/24 subnet", ErrNetwork)
}

// CleanupStale removes the namespaces and links of runs whose harness
// process is gone (killed before it could clean up; its nodes died with it
// through Pdeathsig). It returns what it removed.
func CleanupStale(ctx context.Context) ([]string, error) {
	var removed []string
	var errs []error
	dead := func(name string) (string, bool) {
		var pid int
		if _, err := fmt.Sscanf(name, "lc%d", &pid); err != nil || pid <= 0 {
			return "", false
		}
		prefix := fmt.Sprintf("lc%d", pid)
		if !strings.HasPrefix(name, prefix+"-") && !strings.HasPrefix(name, prefix+"br") {
			return "", false
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			return "", false
		}
		return prefix, true
	}
	out, _ := exec.CommandContext(ctx, "ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if _, ok := dead(name); ok && strings.HasSuffix(name, "br") {
			if err := run(ctx, "ip", "link", "del", name); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "link "+name)
			}
		}
	}
	out, _ = exec.CommandContext(ctx, "ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if _, ok := dead(f[0]); ok {
			if err := run(ctx, "ip", "netns", "del", f[0]); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "netns "+f[0])
			}
		}
	}
	return removed, errors.Join(errs...)
}

// block installs, in node i's namespace, rules dropping packets from the
// nodes in in and to the nodes in out (indexes into n.nodes), replacing any
// earlier rules there.
func (n *network) block(ctx context.Context, i int, in, out []int) error {
	ns := n.ns(n.nodes[i])
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\ntable inet %s {\n", chaosTable, chaosTable, chaosTable)
	b.WriteString("  chain input { type filter hook input priority 0; policy accept;\n")
	for _, j := range in {
		fmt.Fprintf(&b, "    ip saddr %s drop\n", n.ip(j+1))
	}
	b.WriteString("  }\n  chain output { type filter hook output priority 0; policy accept;\n")
	for _, j := range out {
		fmt.Fprintf(&b, "    ip daddr %s drop\n", n.ip(j+1))
	}
	b.WriteString("  }\n}\n")
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: nft in %s: %v: %s", ErrNetwork, ns, err, out)
	}
	return nil
}

// heal removes every partition rule.
func (n *network) heal(ctx context.Context) error {
	var errs []error
	for _, name := range n.nodes {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.ns(name), "nft", "delete", "table", "inet", chaosTable)
		if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Errorf("%w: heal %s: %v: %s", ErrNetwork, name, err, out))
		}
	}
	return errors.Join(errs...)
}

// close tears down everything newNetwork made, in reverse order.
func (n *network) close() error {
	var errs []error
	for i := len(n.made) - 1; i >= 0; i-- {
		if err := n.made[i](); err != nil {
			errs = append(errs, err)
		}
	}
	n.made = nil
	return errors.Join(errs...)
}

// leftovers lists namespaces and links a harness made that are still there.
func (n *network) leftovers() []string {
	var left []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, args := range [][]string{{"netns", "list"}, {"-o", "link", "show"}} {
		out, _ := exec.CommandContext(ctx, "ip", args...).Output()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, n.prefix+"-") || strings.Contains(line, n.prefix+"v") || strings.Contains(line, n.prefix+"br") {
				left = append(left, strings.TrimSpace(line))
			}
		}
	}
	return left
}
