package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Nemeses of the disk, of snapshots and of clients.
const (
	// NemesisSnapshot kills a node while it writes a snapshot (kill-writing:
	// the first node whose snapshots/ directory gains a new .tmp entry) or
	// while it installs one from the leader (kill-installing: a follower is
	// killed, kept down until the leader has compacted its log past it,
	// restarted, and killed again when its install starts writing). Runs
	// that list it get low snapshot settings (snapshotSettings).
	NemesisSnapshot = "snapshot"
	// NemesisDisk: lose-unsynced-{leader,follower}: one node's log disk lies
	// about fsync for a while (POST /chaos/disk?mode=lie), then the node is
	// killed and loses every log write it acknowledged since (see
	// loseUnsynced for why a correct cluster must still lose nothing);
	// io-errors-{leader,follower}: one node's log writes fail with EIO.
	NemesisDisk = "disk"
	// NemesisClientPause pauses one lock holder between its deadline check
	// and its fenced write, long enough for its lease to expire and another
	// holder to take the lock (locker.go).
	NemesisClientPause = "client-pause"
)

// snapshotSettings are the nodes' raft snapshot settings in runs with
// NemesisSnapshot (LEASECLUSTER_CHAOS_SNAPSHOTS, internal/faults/store.go):
// a snapshot every 32 entries, checked every 0.5-1 s, and 16 entries kept
// after it, so a follower down for a second or two needs an install.
const snapshotSettings = "LEASECLUSTER_CHAOS_SNAPSHOTS=threshold=32,interval=500ms,trailing=16"

// snapshotDown is how long a node killed by the snapshot nemesis stays down;
// snapshotLag is how long kill-installing keeps its follower down first.
const (
	snapshotDown = 1500 * time.Millisecond
	snapshotLag  = 3 * time.Second
)

// unsyncedWait bounds how long lose-unsynced keeps its node down waiting
// for the others to commit past what it acknowledged.
const unsyncedWait = 20 * time.Second

// scheduleDisk fills in the steps of this file's kinds (a no-op for others,
// drawing nothing).
func scheduleDisk(s *Step, rng *rand.Rand, ttl time.Duration) {
	switch s.Kind {
	case NemesisSnapshot:
		if rng.IntN(2) == 0 {
			s.Variant, s.Duration = "kill-writing", between(rng, 4*time.Second, 6*time.Second)
		} else {
			s.Variant, s.Duration = "kill-installing", between(rng, 8*time.Second, 10*time.Second)
		}
	case NemesisDisk:
		s.Variant = []string{"lose-unsynced-leader", "lose-unsynced-follower", "io-errors-leader", "io-errors-follower"}[rng.IntN(4)]
		s.Duration = between(rng, time.Second, 3*time.Second)
	case NemesisClientPause:
		s.Variant = "locker"
		s.Delay = 2*ttl + ttl/2 // the pause: the lease surely expires and the key is free
		// The pause, and 1-2 s (x4: 4-8 s) for a holder to reach a check.
		s.Duration = s.Delay + 4*between(rng, time.Second, 2*time.Second)
	}
}

// diskFault resolves a step of this file's kinds; it may change *wait, the
// time between apply and heal.
func (ns *nemesis) diskFault(ctx context.Context, s Step, leader *NodeProc, followers, shuffled []*NodeProc, wait *time.Duration) (targets []*NodeProc, apply, heal func() error) {
	c := ns.c
	target := leader
	if strings.HasSuffix(s.Variant, "follower") || s.Variant == "kill-installing" {
		target = followers[0]
	}
	switch {
	case s.Kind == NemesisClientPause:
		apply = func() error {
			*wait = 0
			if ns.w == nil {
				return fmt.Errorf("no workload to pause")
			}
			// Armed for the step's time beyond the pause; the window then
			// lasts until the pause is over (plus a little), or ends at once
			// if no holder reached a deadline check meanwhile.
			end := time.Now().Add(s.Duration - s.Delay)
			ns.w.pause.arm(s.Delay, end)
			for time.Now().Before(end) && sleep(ctx, 10*time.Millisecond) {
				if _, armed := ns.w.pause.peek(); !armed {
					*wait = s.Delay + 200*time.Millisecond
					return nil
				}
			}
			ns.logf("nemesis: client-pause: no lock holder reached its deadline check within %v", s.Duration-s.Delay)
			return nil
		}
		heal = func() error {
			if ns.w != nil {
				ns.w.pause.disarm()
			}
			return nil
		}
		return nil, apply, heal
	case s.Variant == "kill-writing":
		var victim *NodeProc
		apply = func() error {
			start := time.Now()
			victim = ns.killOnSnapshot(ctx, c.Nodes, s.Duration-snapshotDown)
			*wait = max(snapshotDown, s.Duration-time.Since(start))
			return nil
		}
		heal = func() error {
			if victim == nil {
				return nil
			}
			return c.Restart(victim)
		}
		return shuffled, apply, heal
	case s.Variant == "kill-installing":
		apply = func() error {
			start := time.Now()
			c.Kill(target)
			sleep(ctx, snapshotLag)
			// The watch starts before the restart: the install may come at once.
			ns.killOnSnapshot(ctx, []*NodeProc{target}, s.Duration-snapshotLag-snapshotDown, func() {
				if err := c.Restart(target); err != nil {
					ns.logf("nemesis: snapshot: restarting %s: %v", target.Name, err)
				}
			})
			*wait = max(snapshotDown, s.Duration-time.Since(start))
			return nil
		}
		return []*NodeProc{target}, apply, func() error { return c.Restart(target) }
	case strings.HasPrefix(s.Variant, "io-errors"):
		set := func(mode string) error {
			return retry(ctx, func() error { return c.ChaosPost(ctx, target, "/chaos/disk?mode="+mode) })
		}
		return []*NodeProc{target}, func() error { return set("errors") }, func() error { return set("honest") }
	default: // lose-unsynced
		apply = func() error {
			return retry(ctx, func() error { return c.ChaosPost(ctx, target, "/chaos/disk?mode=lie") })
		}
		return []*NodeProc{target}, apply, func() error { return ns.loseUnsynced(ctx, target) }
	}
}

// killOnSnapshot watches the snapshots/ directories of nodes for up to
// budget and kills the first node that starts writing a snapshot (raft's
// file snapshot store writes into <term>-<index>-<ms>.tmp and renames it
// when done, both for its own snapshots and for installs). It polls every
// millisecond; a kill lands a few milliseconds after the write began, and
// the log line says whether the .tmp was still there after the kill (the
// write really was cut short). then, if given, runs once the watch has
// taken stock of the directories. It returns the killed node, or nil.
func (ns *nemesis) killOnSnapshot(ctx context.Context, nodes []*NodeProc, budget time.Duration, then ...func()) *NodeProc {
	dir := func(n *NodeProc) string { return filepath.Join(n.m.DataDir, "snapshots") }
	tmps := func(n *NodeProc) []string {
		es, _ := os.ReadDir(dir(n))
		var out []string
		for _, e := range es {
			if strings.HasSuffix(e.Name(), ".tmp") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	old := map[string]bool{}
	for _, n := range nodes {
		for _, t := range tmps(n) {
			old[n.Name+"/"+t] = true
		}
	}
	for _, f := range then {
		f()
	}
	end := time.Now().Add(budget)
	for time.Now().Before(end) && ctx.Err() == nil {
		for _, n := range nodes {
			for _, t := range tmps(n) {
				if old[n.Name+"/"+t] || !n.Running() {
					continue
				}
				ns.c.Kill(n)
				_, err := os.Stat(filepath.Join(dir(n), t))
				ns.logf("nemesis: snapshot: killed %s writing snapshot %s (cut short: %v)", n.Name, t, err == nil)
				return n
			}
		}
		time.Sleep(time.Millisecond)
	}
	ns.logf("nemesis: snapshot: no snapshot write on %v within %v", names(nodes), budget)
	return nil
}

// diskState is the disk part of a node's /chaos/state (internal/faults).
type diskState struct {
	Mode      string `json:"mode"`
	Buffered  int    `json:"buffered"`
	LastAcked uint64 `json:"last_acked"`
}

// loseUnsynced ends a lying disk's window: it stalls the disk (writes
// block, so what the node acknowledged is final), reads the last index it
// acknowledged, X, and kills it: every write acknowledged since the disk
// began to lie is lost, while raft on the other nodes counted them. One
// amnesiac node can break Raft's safety if it comes back too early: an
// entry committed by it and one other node of three is lost if the node
// restarts and votes, with the log it has left, for the third node, which
// never had the entry. So the node stays down until another node has
// applied an index above X: that entry was committed by a majority without
// the dead node (it never acknowledged it), so those nodes durably hold the
// whole log up to it, committed entries at or below X included, and every
// later majority meets one of them. Only then does the node start again,
// like a node that was merely behind. With that discipline (and one such
// fault at a time, never nested) a correct cluster loses no acknowledged
// write, and every checker must pass.
func (ns *nemesis) loseUnsynced(ctx context.Context, n *NodeProc) error {
	c := ns.c
	var st struct {
		Disk diskState `json:"disk"`
	}
	err := ns.chaosJSON(ctx, n, "/chaos/disk?mode=stall", &st)
	c.Kill(n)
	if err != nil {
		ns.logf("nemesis: disk: stalling %s: %v; waiting for a new term's commit instead", n.Name, err)
	}
	x := st.Disk.LastAcked
	deadline := time.Now().Add(unsyncedWait)
	for {
		var best uint64
		var by string
		for _, o := range c.Nodes {
			if o == n {
				continue
			}
			if s, err := c.Status(ctx, o); err == nil && s.GetAppliedIndex() > best {
				best, by = s.GetAppliedIndex(), o.Name
			}
		}
		if best > x && x > 0 {
			ns.logf("nemesis: disk: %s lost %d acknowledged log entries (last acknowledged %d); %s applied %d, restarting it", n.Name, st.Disk.Buffered, x, by, best)
			break
		}
		if time.Now().After(deadline) || !sleep(ctx, 50*time.Millisecond) {
			ns.logf("nemesis: disk: no node applied past %s's last acknowledged index %d within %v; restarting it anyway (a checker failure after this is no evidence)", n.Name, x, unsyncedWait)
			break
		}
	}
	return c.Restart(n)
}

// chaosJSON posts to a /chaos/ control and decodes its JSON answer.
func (ns *nemesis) chaosJSON(ctx context.Context, n *NodeProc, path string, out any) error {
	return ns.c.do(ctx, http.MethodPost, n, path, out)
}
