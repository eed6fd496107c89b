package faults

import (
	"sync"
	"time"
)

// Clock is the lessor's clock in chaos builds. Rate drift changes how
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
type Clock struct {
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

func NewClock(wallOnly bool) *Clock {
	now := time.Now()
	return &Clock{wallOnly: wallOnly, anchor: now, reading: now, cur: 1, rate: 1, follow: 1}
}

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time {
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
func (c *Clock) reanchorLocked(now time.Time) {
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
func (c *Clock) set(offset *time.Duration, rate, follow *float64) {
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
func (c *Clock) setLeading(leading func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reanchorLocked(time.Now())
	c.leading = leading
}

type ClockState struct {
	OffsetMs     int64   `json:"offset_ms"`
	Rate         float64 `json:"rate"`
	FollowerRate float64 `json:"follower_rate"`
	Current      float64 `json:"current_rate"`
	WallOnly     bool    `json:"wall_only"`
}

func (c *Clock) state() ClockState {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reanchorLocked(time.Now())
	return ClockState{OffsetMs: c.offset.Milliseconds(), Rate: c.rate, FollowerRate: c.follow, Current: c.cur, WallOnly: c.wallOnly}
}
