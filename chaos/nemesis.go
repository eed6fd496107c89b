package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// Nemesis kinds.
const (
	NemesisKill      = "kill"
	NemesisPause     = "pause"
	NemesisPartition = "partition"
	NemesisClock     = "clock"
	NemesisFsync     = "fsync"
	NemesisTransfer  = "transfer"
)

// NemesisOverlap is no fault of its own: listed beside others, it lets the
// scheduler nest a second fault inside a step's window (nemesis_overlap.go).
const NemesisOverlap = "overlap"

// AllNemeses lists every nemesis kind.
var AllNemeses = []string{NemesisKill, NemesisPause, NemesisPartition, NemesisClock, NemesisFsync, NemesisTransfer, NemesisMembership,
	NemesisSnapshot, NemesisDisk, NemesisClientPause, NemesisOverlap}

// Step is one scheduled fault. The schedule is a pure function of the seed;
// which node "the leader" is gets resolved when the step runs, and Pick
// chooses among the candidates then.
type Step struct {
	Gap      time.Duration `json:"gap"` // wait before the fault
	Kind     string        `json:"kind"`
	Variant  string        `json:"variant"`
	Duration time.Duration `json:"duration"`
	Pick     uint64        `json:"pick"`
	Offset   time.Duration `json:"offset,omitempty"` // clock: wall-clock step
	Rate     float64       `json:"rate,omitempty"`   // clock: rate, within the 1% drift budget; transfer: follower rate, beyond it
	Delay    time.Duration `json:"delay,omitempty"`  // fsync
	// Inner is a second fault nested in this one's window, starting InnerAt
	// after it (overlap: nemesis_overlap.go).
	Inner   *Step         `json:"inner,omitempty"`
	InnerAt time.Duration `json:"inner_at,omitempty"`
}

func (s Step) String() string {
	d := fmt.Sprintf("%s/%s for %v", s.Kind, s.Variant, s.Duration)
	switch s.Kind {
	case NemesisClock:
		d += fmt.Sprintf(" offset=%v rate=%.4f", s.Offset, s.Rate)
	case NemesisFsync:
		d += fmt.Sprintf(" delay=%v", s.Delay)
	case NemesisTransfer:
		if s.Rate != 0 {
			d += fmt.Sprintf(" follower-rate=%.4f", s.Rate)
		}
	}
	if s.Inner != nil {
		d += fmt.Sprintf(" + after %v: %s", s.InnerAt, s.Inner)
	}
	return d
}

// Schedule derives the fault schedule of a run from its seed. NemesisOverlap
// in kinds is no fault of its own: it lets a step carry a second fault
// nested inside its window (nemesis_overlap.go). Lists without it give the
// schedules they always gave.
func Schedule(seed int64, kinds []string, total time.Duration, nodes int, election, ttl time.Duration) []Step {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6c65617365))
	kinds, overlap := withoutOverlap(kinds)
	var out []Step
	for at := time.Duration(0); len(kinds) > 0; {
		s := Step{Gap: between(rng, time.Second, 3*time.Second), Kind: kinds[rng.IntN(len(kinds))], Pick: rng.Uint64()}
		fill(&s, rng, nodes, election, ttl)
		if overlap {
			nest(&s, rng, kinds, nodes, election, ttl) // nemesis_overlap.go
		}
		at += s.Gap + s.Duration
		if at > total {
			break
		}
		out = append(out, s)
	}
	return out
}

// between draws a duration in [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// fill draws the variant, duration and parameters of a step of s.Kind.
func fill(s *Step, rng *rand.Rand, nodes int, election, ttl time.Duration) {
	dur := func(lo, hi time.Duration) time.Duration { return between(rng, lo, hi) }
	switch s.Kind {
	case NemesisKill:
		s.Variant = []string{"one", "leader", "minority", "all"}[rng.IntN(4)]
		s.Duration = dur(time.Second, 5*time.Second)
	case NemesisPause:
		who := []string{"leader", "follower"}[rng.IntN(2)]
		switch rng.IntN(3) {
		case 0:
			s.Variant, s.Duration = who+"-short", election/2
		case 1:
			s.Variant, s.Duration = who+"-long", election*5/2
		default:
			s.Variant, s.Duration = who+"-over-ttl", ttl*3/2
		}
	case NemesisPartition:
		vs := []string{"isolate-leader", "halves", "bridge", "oneway-leader"}
		if nodes >= 5 {
			vs = append(vs, "ring")
		}
		s.Variant = vs[rng.IntN(len(vs))]
		s.Duration = dur(2*time.Second, 8*time.Second)
	case NemesisClock:
		s.Variant = []string{"jump", "drift", "jump+drift"}[rng.IntN(3)]
		s.Duration = dur(3*time.Second, 10*time.Second)
		s.Rate = 1
		if strings.Contains(s.Variant, "jump") {
			s.Offset = dur(time.Second, 2*time.Minute)
			if rng.IntN(2) == 0 {
				s.Offset = -s.Offset
			}
		}
		if strings.Contains(s.Variant, "drift") {
			// Within +-0.9%: client and server drift together stay
			// inside the client's 2% SafetyMargin.
			s.Rate = 1 + (rng.Float64()*2-1)*0.009
		}
	case NemesisFsync:
		s.Variant = []string{"leader", "one", "all", "leader-stall-isolated"}[rng.IntN(4)]
		s.Duration = dur(2*time.Second, 8*time.Second)
		s.Delay = dur(20*time.Millisecond, 300*time.Millisecond)
		if s.Variant == "leader-stall-isolated" {
			// A disk that stalls longer than an election while the
			// leader is cut off: raft's leader loop blocks in
			// StoreLogs, so raft's own leader lease cannot step it
			// down, and only VerifyLeader keeps renewals honest.
			// The stall outlasts an election plus a TTL and the
			// extension, so leases renewed only at the stale leader
			// expire on the new one while the stall lasts.
			s.Delay = 2*ttl + election
			s.Duration = s.Delay + 2*election
		}
	case NemesisTransfer:
		// Handovers come often (a step every 1.6-2.6 s with a 3 s
		// TTL): one that follows a lease's last renewal closely, or
		// its checkpoint by long, is what tests the extension.
		s.Gap = dur(100*time.Millisecond, 300*time.Millisecond)
		s.Variant = "handover"
		if rng.IntN(4) != 0 {
			// Followers' lessor clocks run 15-20% fast until the
			// handover: far beyond the client's 2% SafetyMargin,
			// which no server could honour if a leader's clock ran
			// that fast. The chaos clock applies this rate only while
			// a node follows, i.e. to the remainders of checkpointed
			// leases that a new leader inherits (rule 3: apply time +
			// remainder, on the follower's clock): up to 20% of 3/4
			// TTL + 250 ms, 500 ms with a 3 s TTL, far more than its
			// 61 ms margin and half the extension. The next handover
			// comes within 3/4 TTL + 300 ms, so a lease checkpointed
			// at one still expires on the drifted leader of the next.
			// The checkers are unchanged: a server without the
			// extension fails no-early-expiry, the real one passes.
			s.Variant = "fast-followers"
			s.Duration = dur(ttl/2, ttl*3/4)
			s.Rate = 1.15 + rng.Float64()*0.05
		}
	}
	if s.Kind == NemesisMembership {
		scheduleMembership(s, rng) // nemesis_membership.go
	}
	scheduleDisk(s, rng, ttl) // nemesis_disk.go: snapshot, disk, client-pause
}

// nemesis runs a schedule against a cluster, recording each fault.
type nemesis struct {
	c    *Cluster
	h    *History
	w    *workload // the client-pause nemesis pauses its lockers; nil in tests
	logf func(string, ...any)
}

// run executes steps until they are done or ctx ends; every fault is healed
// before run returns.
func (ns *nemesis) run(ctx context.Context, steps []Step) {
	for _, s := range steps {
		if !sleep(ctx, s.Gap) {
			return
		}
		ns.step(ctx, s)
	}
}

// pick orders candidates deterministically by the step's Pick.
func pick(cands []*NodeProc, seed uint64) []*NodeProc {
	out := append([]*NodeProc(nil), cands...)
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	r := rand.New(rand.NewPCG(seed, 1))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func names(ns []*NodeProc) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

// step applies one fault, waits its duration (or until ctx ends: the heal
// runs regardless) and heals it.
func (ns *nemesis) step(ctx context.Context, s Step) {
	c := ns.c
	bg := context.WithoutCancel(ctx)
	leader, _ := c.Leader(ctx)
	var followers []*NodeProc
	for _, n := range c.Nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	shuffled := pick(c.Nodes, s.Pick)
	if leader == nil {
		leader = shuffled[0]
		followers = shuffled[1:]
	}
	followers = pick(followers, s.Pick)
	var targets []*NodeProc
	var apply func() error
	var heal func() error
	wait := s.Duration // how long the fault lasts between apply and heal
	switch s.Kind {
	case NemesisKill:
		switch s.Variant {
		case "one":
			targets = shuffled[:1]
		case "leader":
			targets = []*NodeProc{leader}
		case "minority":
			targets = shuffled[:(len(c.Nodes)-1)/2]
		case "all":
			targets = c.Nodes
		}
		apply = func() error {
			for _, n := range targets {
				c.Kill(n)
			}
			return nil
		}
		heal = func() error {
			for _, n := range targets {
				if err := c.Restart(n); err != nil {
					return err
				}
			}
			return nil
		}
	case NemesisPause:
		targets = []*NodeProc{leader}
		if strings.HasPrefix(s.Variant, "follower") {
			targets = followers[:1]
		}
		apply = func() error { return c.Pause(targets[0]) }
		heal = func() error { return c.Resume(targets[0]) }
	case NemesisPartition:
		if !c.Partitionable() {
			ns.logf("nemesis: skipping %s: partitions need root (network namespaces)", s)
			return
		}
		in, out, tg := partitionRules(s.Variant, leader, followers, shuffled)
		targets = tg
		apply = func() error { return c.Block(bg, in, out) }
		heal = func() error { return c.Heal(bg) }
	case NemesisClock:
		targets = shuffled[:1+int(s.Pick%uint64(len(c.Nodes)))]
		if strings.Contains(s.Variant, "jump") && !slices.Contains(targets, leader) {
			// A step of the leader's clock is the one that matters: the
			// leader is the node that expires leases.
			targets = append([]*NodeProc{leader}, targets[:len(targets)-1]...)
		}
		apply = func() error {
			for _, n := range targets {
				if err := c.ChaosPost(bg, n, fmt.Sprintf("/chaos/clock?offset=%s&rate=%g", s.Offset, s.Rate)); err != nil {
					return err
				}
			}
			return nil
		}
		heal = func() error {
			for _, n := range targets {
				if err := retry(bg, func() error { return c.ChaosPost(bg, n, "/chaos/clock?offset=0s&rate=1") }); err != nil {
					return err
				}
			}
			return nil
		}
	case NemesisFsync:
		switch s.Variant {
		case "leader", "leader-stall-isolated":
			targets = []*NodeProc{leader}
		case "one":
			targets = shuffled[:1]
		default:
			targets = c.Nodes
		}
		set := func(d time.Duration) error {
			for _, n := range targets {
				if err := retry(bg, func() error { return c.ChaosPost(bg, n, fmt.Sprintf("/chaos/fsync?delay=%s", d)) }); err != nil {
					return err
				}
			}
			return nil
		}
		apply = func() error { return set(s.Delay) }
		heal = func() error { return set(0) }
		if s.Variant == "leader-stall-isolated" && c.Partitionable() {
			in, out, _ := partitionRules("isolate-leader", leader, followers, shuffled)
			apply = func() error {
				if err := set(s.Delay); err != nil {
					return err
				}
				c.Poke(leader)
				return c.Block(bg, in, out)
			}
			heal = func() error {
				if err := c.Heal(bg); err != nil {
					return err
				}
				return set(0)
			}
		}
	case NemesisTransfer:
		targets = []*NodeProc{leader}
		setRate := func(r float64) error {
			var errs []error
			for _, n := range c.Nodes {
				errs = append(errs, retry(bg, func() error { return c.ChaosPost(bg, n, fmt.Sprintf("/chaos/clock?follower_rate=%g", r)) }))
			}
			return errors.Join(errs...)
		}
		handover := func() error {
			// The leader again: a step may have outlived it.
			from, err := c.Leader(bg)
			if err != nil {
				return err
			}
			return ns.transfer(bg, from)
		}
		apply, heal = handover, func() error { return nil }
		if s.Variant == "fast-followers" {
			// Every node gets the rate; it runs only while a node follows,
			// so the leader keeps an honest clock until it hands over.
			targets = followers
			apply = func() error { return setRate(s.Rate) }
			heal = func() error {
				err := handover()
				return errors.Join(err, setRate(1))
			}
		}
	case NemesisMembership:
		targets, apply, heal = ns.membership(bg, s, leader, shuffled) // nemesis_membership.go
	case NemesisSnapshot, NemesisDisk, NemesisClientPause:
		targets, apply, heal = ns.diskFault(bg, s, leader, followers, shuffled, &wait) // nemesis_disk.go
	default:
		return
	}
	id := ns.h.StartFault(s.Kind, s.String(), names(targets))
	ns.logf("nemesis: %s on %v", s, names(targets))
	if err := apply(); err != nil {
		ns.logf("nemesis: %s: %v", s.Kind, err)
	}
	ns.hold(ctx, s, wait) // nemesis_overlap.go: runs s.Inner meanwhile
	if err := heal(); err != nil {
		ns.logf("nemesis: healing %s: %v", s.Kind, err)
	}
	ns.h.EndFault(id)
}

// transferWait bounds how long a handover may take to produce a new leader:
// raft's own transfer timeout is an election timeout, and the harness uses
// at most a few seconds of those.
const transferWait = 5 * time.Second

// transfer asks from to hand its leadership over and waits until another
// node reports leading, so that the fault window covers the handover.
func (ns *nemesis) transfer(ctx context.Context, from *NodeProc) error {
	if err := ns.c.ChaosPost(ctx, from, "/chaos/transfer"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, transferWait)
	defer cancel()
	for {
		if l, err := ns.c.Leader(ctx); err == nil && l != from {
			return nil
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return fmt.Errorf("%w: no new leader within %v of a transfer from %s", ErrNoLeader, transferWait, from.Name)
		}
	}
}

// partitionRules turns a partition variant into per-node drop rules.
func partitionRules(variant string, leader *NodeProc, followers, shuffled []*NodeProc) (in, out map[int][]int, targets []*NodeProc) {
	in, out = map[int][]int{}, map[int][]int{}
	cut := func(a, b *NodeProc) {
		in[a.Index] = append(in[a.Index], b.Index)
		out[a.Index] = append(out[a.Index], b.Index)
		in[b.Index] = append(in[b.Index], a.Index)
		out[b.Index] = append(out[b.Index], a.Index)
	}
	cutGroups := func(x, y []*NodeProc) {
		for _, a := range x {
			for _, b := range y {
				cut(a, b)
			}
		}
	}
	n := len(shuffled)
	switch variant {
	case "isolate-leader":
		cutGroups([]*NodeProc{leader}, followers)
		targets = []*NodeProc{leader}
	case "halves":
		cutGroups(shuffled[:n/2], shuffled[n/2:])
		targets = shuffled[:n/2]
	case "bridge":
		// Two sides that cannot talk, and one node that talks to both.
		bridge, rest := shuffled[0], shuffled[1:]
		cutGroups(rest[:len(rest)/2], rest[len(rest)/2:])
		targets = []*NodeProc{bridge}
	case "ring":
		// Each node sees only its two ring neighbours: every node is in a
		// majority, and no two majorities agree.
		for i := range shuffled {
			for j := i + 1; j < n; j++ {
				if d := j - i; d != 1 && d != n-1 {
					cut(shuffled[i], shuffled[j])
				}
			}
		}
		targets = shuffled
	case "oneway-leader":
		// The leader's packets to its followers are lost; theirs reach it.
		for _, f := range followers {
			out[leader.Index] = append(out[leader.Index], f.Index)
			in[f.Index] = append(in[f.Index], leader.Index)
		}
		targets = []*NodeProc{leader}
	}
	return in, out, targets
}
