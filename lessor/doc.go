// Package lessor is the lease table that every leasecluster node holds: leases
// with millisecond TTLs, the items attached to them, the expiry and checkpoint
// schedules, and the Promote/Demote switch that makes one node's table the
// primary.
//
// It follows the API of etcd's lease package (Lessor, Grant, Revoke, Renew,
// Attach/Detach, GetLease, Lookup, Promote/Demote, ExpiredLeasesC, Recover)
// with the changes that a Raft-replicated lease service needs:
//
//   - TTLs are milliseconds. The replicated changes (Grant, Recover) take a
//     TTL as the log carries it, anywhere in 1..TTLCeiling, a constant of the
//     format: no node's config (MinTTL, MaxTTL, RevokeRate, Clock) reaches
//     the replicated state, so replicas started with different flags hold
//     the same leases. Raising a short request to the minimum TTL
//     (ARCHITECTURE.md rule 4) happens once, on the leader, before it
//     proposes; etcd's lessor raises at apply on every replica instead.
//   - Replicated state (what every replica holds identically, and what a
//     snapshot carries) is LeaseState: ID, TTL, the checkpointed remainder, the
//     reset generation, the attached keys and the owner (the identity that
//     granted it, set once by GrantOwned; who may act on an owned lease is
//     the FSM's rule, not the lessor's). Everything time-related that a
//     node derives locally (when it applied a checkpoint, when a primary will
//     expire a lease) lives beside it and only ever makes an expiry later.
//   - Recover takes the leases decoded from a Raft snapshot (State returns
//     them for writing one) instead of etcd's bolt backend: our durable state
//     is the Raft log plus snapshots, never a separate backend.
//   - Checkpoints (ARCHITECTURE.md rule 3): a primary yields batches of
//     (lease, remaining TTL) on CheckpointsC for leases that have gone unrenewed
//     for more than TTL/2 and, once, for every lease after Promote. The caller
//     replicates them and every replica applies them with Checkpoint, noting
//     its own apply time. A new primary expires a checkpointed lease at
//     apply time + remainder + extend, any other lease at promote time + TTL +
//     extend, so an unrenewed lease is gone within 2 x TTL + extend of its last
//     renewal however often leadership changes.
//   - Renew returns ErrResetRequired while a lease carries a checkpointed
//     remainder or has a checkpoint in flight: the caller must first replicate
//     a reset (a Checkpoint with Remaining 0) and then renew, so that an
//     acknowledged renewal can never be undercut by an older checkpoint on a
//     later leader (rule 2, no early expiry). A reset bumps the lease's
//     generation and any checkpoint computed before it is ignored on apply.
//
// A primary lessor runs one goroutine that pops due leases from a min-heap and
// delivers them on ExpiredLeasesC in batches of up to Config.BatchSize,
// rate-limited to Config.RevokeRate leases per second. It never blocks on a
// slow reader, and offers a lease again every Config.RetryInterval until it
// is revoked. Once a primary has seen a lease expire, Renew refuses it
// (ErrLeaseExpired) for the rest of that primary term, so a revoke proposed for
// an expired lease can never race with an acknowledged renewal.
//
// Promote itself is O(1) for a large table: a sweep goroutine allocates the
// heaps at full size with no lock held, then schedules the leases in the
// order of their addresses in memory, in chunks, letting waiting renewals
// and replicated changes take the lock every few dozen leases (so do the
// delivery loop and Checkpoint), so that Renew and Lookup are not stalled by
// a million-lease table; where many leases would expire together it spreads
// them into later slots that the revoke rate can keep up with. Demote is
// O(1).
//
// Time comes from Config.Clock (the real clock by default); tests run the
// lessor inside testing/synctest bubbles so that every timing rule is checked
// in fake time.
package lessor
