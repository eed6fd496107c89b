//go:build chaos

package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/lessor"
)

// chaosBuild is true only in builds with the chaos tag (the harness in chaos/
// builds the node that way). It enables the test-only fault points below:
//
//   - a controllable lessor clock (offset steps of the wall reading, rate
//     drift of the monotonic one, and a rate that applies only while the node
//     follows) at /chaos/clock on the HTTP server;
//   - a leadership transfer at /chaos/transfer (Node.TransferLeadership,
//     which the public API does not offer);
//   - a slow-fsync delay on every Raft log write at /chaos/fsync;
//   - deliberately broken variants selected at start by
//     LEASECLUSTER_CHAOS_BUG, which the harness's bite tests use to prove
//     that its checkers catch real bugs.
const chaosBuild = true

// earlyExpiryFraction: the early-expiry variant revokes a lease once less
// than this fraction of its TTL remains, i.e. 15% (450 ms of a 3 s TTL)
// before it is due, far beyond the client's 2% safety margin.
const earlyExpiryFraction = 0.15

var (
	chaosBugName string      // set once at start, before any goroutine reads it
	chaosClk     *chaosClock // the lessor's clock in chaos builds
	chaosStore   *slowStore  // the Raft log store wrapper, once wrapped
)

func chaosBugIs(name string) bool { return chaosBugName == name }

// chaosConfigure installs the fault points: it runs in newNode after the
// configuration has been validated and defaulted.
func chaosConfigure(cfg Config) Config {
	chaosBugName = os.Getenv("LEASECLUSTER_CHAOS_BUG")
	switch chaosBugName {
	case "", bugSkipVerify, bugEarlyExpiry, bugLeaderOnlyRevoke, bugWallClock:
	case bugNoExtend:
		// Validate insists on Extend >= the election timeout; this variant
		// deliberately breaks that after validation.
		cfg.Extend = time.Nanosecond
	default:
		cfg.Logger.Error("unknown LEASECLUSTER_CHAOS_BUG; running unbroken", "bug", chaosBugName)
		chaosBugName = ""
	}
	if chaosBugName != "" {
		cfg.Logger.Warn("CHAOS BUILD: running a deliberately broken server", "bug", chaosBugName)
	}
	if cfg.Clock == nil {
		chaosClk = newChaosClock(chaosBugName == bugWallClock)
		cfg.Clock = chaosClk
	}
	return cfg
}

// chaosClock is the lessor's clock in chaos builds. Rate drift changes how
// fast its readings advance, monotonic part included, so the real lessor
// sees it; within the client's SafetyMargin (2%) that is harmless. Offset
// steps model a wall-clock step (NTP): they move only the wall reading,
// which the real lessor never uses, because Go subtracts the monotonic
// parts of two readings. Go has no way to move a reading's wall part alone,
// so in the normal variant the step is not visible in the readings at all;
// the wall-clock variant strips the monotonic part (as a server storing
// Unix times would) and adds the offset, so it sees every step.
//
// The follower rate multiplies the rate while the node is not leading. It
// lets the harness drift a node's clock far beyond the 2% margin only in the
// time that the extension exists for: between a node's applying a
// checkpoint (rule 3 notes that on its own clock) and its Promote. A leader
// whose clock ran that fast would expire its own renewals early, which no
// server can prevent, so the clock falls back to the plain rate as soon as
// the node leads. The switch is noticed at the first reading after the
// node starts leading, so the fast rate may run on for one lessor wake-up
// (at most 250 ms) into the term: that only moves expiries computed before
// the switch, i.e. the inherited leases, earlier (the stress intended), and
// never a renewal made as leader.
//
// In a process with several nodes (in-process tests built with the chaos
// tag) the /chaos/ endpoints control the clock and store of the node started
// last; the harness runs one node per process.
type chaosClock struct {
	mu       sync.Mutex
	wallOnly bool
	leading  func() bool   // the node's leadership; nil until its HTTP server starts
	anchor   time.Time     // real time.Now() at the last rate change
	reading  time.Time     // this clock's (monotonic-carrying) reading at anchor
	cur      float64       // clock seconds per real second since anchor
	rate     float64       // the rate while leading (or always, with follow 1)
	follow   float64       // multiplies rate while the node follows
	offset   time.Duration // wall-clock step, seen only through the wall part
}

func newChaosClock(wallOnly bool) *chaosClock {
	now := time.Now()
	return &chaosClock{wallOnly: wallOnly, anchor: now, reading: now, cur: 1, rate: 1, follow: 1}
}

func (c *chaosClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *chaosClock) nowLocked() time.Time {
	c.reanchorLocked(time.Now())
	t := c.reading.Add(time.Duration(float64(time.Since(c.anchor)) * c.cur))
	if c.wallOnly {
		return t.Round(0).Add(c.offset)
	}
	// Go has no public way to move a reading's wall part alone; the offset
	// is reported by /chaos/clock and reaches only wall-clock consumers.
	return t
}

// reanchorLocked starts a new segment at now if the effective rate changed,
// so that readings stay continuous and never go back.
func (c *chaosClock) reanchorLocked(now time.Time) {
	want := c.rate
	if c.follow != 1 && c.leading != nil && !c.leading() {
		want *= c.follow
	}
	if want == c.cur {
		return
	}
	c.reading = c.reading.Add(time.Duration(float64(now.Sub(c.anchor)) * c.cur))
	c.anchor = now
	c.cur = want
}

// set changes the offset, the rate and/or the follower rate; nil leaves a
// value unchanged.
func (c *chaosClock) set(offset *time.Duration, rate, follow *float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.reanchorLocked(now) // the time so far ran at the old rate
	if rate != nil {
		c.rate = *rate
	}
	if follow != nil {
		c.follow = *follow
	}
	c.reanchorLocked(now)
	if offset != nil {
		c.offset = *offset
	}
}

// setLeading tells the clock how to learn whether its node leads.
func (c *chaosClock) setLeading(leading func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reanchorLocked(time.Now())
	c.leading = leading
}

type chaosClockState struct {
	OffsetMs     int64   `json:"offset_ms"`
	Rate         float64 `json:"rate"`
	FollowerRate float64 `json:"follower_rate"`
	Current      float64 `json:"current_rate"`
	WallOnly     bool    `json:"wall_only"`
}

func (c *chaosClock) state() chaosClockState {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reanchorLocked(time.Now())
	return chaosClockState{OffsetMs: c.offset.Milliseconds(), Rate: c.rate, FollowerRate: c.follow, Current: c.cur, WallOnly: c.wallOnly}
}

// slowStore delays every Raft log write by a settable amount, like a disk
// whose fsync stalls.
type slowStore struct {
	raft.LogStore
	delay atomic.Int64 // nanoseconds
}

func chaosLogStore(s raft.LogStore) raft.LogStore {
	chaosStore = &slowStore{LogStore: s}
	return chaosStore
}

func (s *slowStore) wait() {
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d) // the fault itself: a stalled write
	}
}

func (s *slowStore) StoreLog(l *raft.Log) error {
	s.wait()
	return s.LogStore.StoreLog(l)
}

func (s *slowStore) StoreLogs(ls []*raft.Log) error {
	s.wait()
	return s.LogStore.StoreLogs(ls)
}

// chaosLocalRevoke is the leader-only-revoke variant: the leader deletes the
// lease from its own lessor and never replicates the revoke.
func (n *Node) chaosLocalRevoke(id lessor.LeaseID) error {
	if !n.leading.Load() {
		return n.notLeader()
	}
	return n.lessor.Revoke(id)
}

// chaosSkipVerify is the skip-verify variant on the KeepAlive stream: the
// batch is answered with a round that has already "succeeded", without any
// leadership confirmation. It reports whether it took the batch.
func (n *Node) chaosSkipVerify(ctx context.Context, pending chan<- keepAliveBatch, results []RenewResult) bool {
	r := &verifyRound{done: make(chan struct{})}
	close(r.done)
	select {
	case pending <- keepAliveBatch{round: r, results: results}:
	case <-ctx.Done():
	}
	return true
}

// chaosEarlyExpiry is the early-expiry variant: while the term lasts, the
// leader revokes every lease with less than earlyExpiryFraction of its TTL
// left, beside the lessor's own (correct) expiry.
func (n *Node) chaosEarlyExpiry(t *leaderTerm) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-t.ctx.Done():
				return
			case <-tick.C:
			}
			var ids []lessor.LeaseID
			for _, l := range n.lessor.Leases() {
				if l.Remaining() < time.Duration(float64(l.TTL())*earlyExpiryFraction)*time.Millisecond {
					ids = append(ids, l.ID)
				}
			}
			if len(ids) == 0 {
				continue
			}
			if data, err := fsm.EncodeRevoke(0, ids, true); err == nil {
				_ = n.raft.Apply(data, n.cfg.ApplyTimeout).Error()
			}
		}
	}()
}

// chaosHTTP serves the fault controls under /chaos/ beside the public API.
//
//	GET  /chaos/state                          -> {"bug","clock":{...},"fsync_delay_ms"}
//	POST /chaos/clock?offset=5s&rate=1.004&follower_rate=1.1   (any subset)
//	POST /chaos/fsync?delay=200ms
//	POST /chaos/transfer                       (on the leader; returns once raft is done)
func chaosHTTP(n *Node, h http.Handler) http.Handler {
	if chaosClk != nil {
		chaosClk.setLeading(n.leading.Load)
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /chaos/state", func(w http.ResponseWriter, _ *http.Request) {
		writeChaosState(w)
	})
	mux.HandleFunc("POST /chaos/clock", func(w http.ResponseWriter, r *http.Request) {
		if chaosClk == nil {
			http.Error(w, "the node was started with its own clock", http.StatusConflict)
			return
		}
		var off *time.Duration
		if v := r.URL.Query().Get("offset"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			off = &d
		}
		rate, err := chaosRateParam(r, "rate")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		follow, err := chaosRateParam(r, "follower_rate")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		chaosClk.set(off, rate, follow)
		writeChaosState(w)
	})
	mux.HandleFunc("POST /chaos/fsync", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("delay"))
		if err != nil || d < 0 || chaosStore == nil {
			http.Error(w, "want delay=<duration> >= 0", http.StatusBadRequest)
			return
		}
		chaosStore.delay.Store(int64(d))
		writeChaosState(w)
	})
	mux.HandleFunc("POST /chaos/transfer", func(w http.ResponseWriter, _ *http.Request) {
		// A follower answers 409: the harness asks the node it saw leading,
		// and a leadership change in between is not worth a retry.
		if err := n.TransferLeadership(); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeChaosState(w)
	})
	return mux
}

// chaosRateParam parses an optional positive rate parameter.
func chaosRateParam(r *http.Request, name string) (*float64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		return nil, fmt.Errorf("bad %s %q", name, v)
	}
	return &f, nil
}

func writeChaosState(w http.ResponseWriter) {
	st := map[string]any{"bug": chaosBugName}
	if chaosClk != nil {
		st["clock"] = chaosClk.state()
	}
	if chaosStore != nil {
		st["fsync_delay_ms"] = time.Duration(chaosStore.delay.Load()).Milliseconds()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}
