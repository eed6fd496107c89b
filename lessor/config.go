package lessor

import (
	"fmt"
	"time"
)

// TTLCeiling is the largest TTL (and checkpointed remainder) that the
// replicated paths, Grant and Recover, accept: a constant of the replicated
// format, the same on every node and in every build that reads the same log,
// never a flag. Ten years in nanoseconds is 3.2e17, about a thirtieth of what
// an int64 holds (292 years), so every sum the lessor forms in nanoseconds
// (its clock since it started + a TTL or remainder + extend + spreading)
// stays far from overflowing. A node's MaxTTL may be at most this.
const TTLCeiling = 10 * 365 * 24 * time.Hour

// ttlCeilingMs is TTLCeiling in milliseconds, the unit of TTLs.
const ttlCeilingMs = int64(TTLCeiling / time.Millisecond)

// Config configures a lessor. The zero value of a field means its default.
// Nothing in it reaches the replicated state: Grant, Revoke, Attach, Detach,
// Checkpoint and Recover apply what the log says whatever the node's config,
// so that replicas started with different flags never diverge.
type Config struct {
	// MinTTL and MaxTTL are a node's request policy (ARCHITECTURE.md rule
	// 4), which its leader applies before it proposes a grant: a shorter
	// request is raised to MinTTL, a longer one refused. The lessor only
	// validates them (MinTTL at least 1 ms, MaxTTL between MinTTL and
	// TTLCeiling); Grant and Recover take a logged TTL as it is, anywhere in
	// 1..TTLCeiling, because nodes may be started with different values
	// (during a rolling change of the flags, say) and must still hold the
	// same state. Defaults 1.5 s and 30 days.
	MinTTL time.Duration
	MaxTTL time.Duration
	// RevokeRate caps the leases per second that ExpiredLeasesC delivers, and
	// the checkpoints per second CheckpointsC delivers: a primary's pacing
	// of what it proposes, never read when a change applies. Default 100,000.
	RevokeRate int
	// BatchSize is the most leases (or checkpoints) in one batch. Default 1,000.
	BatchSize int
	// RetryInterval is how soon an expired lease (or a checkpoint) that has
	// been delivered but not applied is offered again. Default 1 s.
	RetryInterval time.Duration
	// Clock is the time source. Default: the real clock. It times only what
	// is local to a node (a primary's expiries, when a checkpoint applied),
	// never a replicated field.
	Clock Clock
}

// Defaults for Config.
const (
	DefaultMinTTL        = 1500 * time.Millisecond
	DefaultMaxTTL        = 30 * 24 * time.Hour
	DefaultRevokeRate    = 100_000
	DefaultBatchSize     = 1_000
	DefaultRetryInterval = time.Second
)

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MinTTL == 0 {
		c.MinTTL = DefaultMinTTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.RevokeRate == 0 {
		c.RevokeRate = DefaultRevokeRate
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MinTTL < time.Millisecond:
		return fmt.Errorf("lessor: MinTTL %v is below 1ms", c.MinTTL)
	case c.MaxTTL < c.MinTTL:
		return fmt.Errorf("lessor: MaxTTL %v is below MinTTL %v", c.MaxTTL, c.MinTTL)
	case c.MaxTTL > TTLCeiling:
		return fmt.Errorf("lessor: MaxTTL %v is above the ceiling of the replicated format, %v", c.MaxTTL, TTLCeiling)
	case c.RevokeRate < 0:
		return fmt.Errorf("lessor: RevokeRate %d is negative", c.RevokeRate)
	case c.BatchSize < 1:
		return fmt.Errorf("lessor: BatchSize %d is below 1", c.BatchSize)
	case c.RetryInterval < 0:
		return fmt.Errorf("lessor: RetryInterval %v is negative", c.RetryInterval)
	}
	return nil
}

// checkTTL reports a TTL in milliseconds that no replicated change may
// carry: one outside 1..TTLCeiling. It depends on nothing but ttl, so every
// replica answers alike.
func checkTTL(ttl int64) error {
	if ttl <= 0 || ttl > ttlCeilingMs {
		return fmt.Errorf("%w: %d ms (allowed 1 to %d)", ErrInvalidTTL, ttl, ttlCeilingMs)
	}
	return nil
}
