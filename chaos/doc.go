// Package chaos is leasecluster's Jepsen-style harness: it starts real node
// processes (each in its own network namespace when run as root, on loopback
// otherwise), injects faults (kills, pauses, nftables partitions, clock steps
// and drift, slow fsync, leadership transfers while followers' clocks drift
// beyond the client's margin) while workloads grant, renew, revoke, lock and
// read, records every operation with invoke and complete times from one
// monotonic clock, and then checks the history.
//
// The checkers are what make it evidence rather than a smoke test: porcupine
// linearizability per lease and per item, unique lease IDs, no early expiry
// (ARCHITECTURE.md rule 2), no overlapping lock holders, strictly increasing
// fencing tokens and no stale write accepted by a fenced resource (rule 7), no
// resurrection of a lease seen gone, bounded expiry (rule 3), TTL
// sanity (rule 4) and replica convergence (rule 1). bite_test.go runs the
// harness against deliberately broken servers (chaos build tag,
// LEASECLUSTER_CHAOS_BUG) and asserts that the matching checker fails.
//
// Time in a history is nanoseconds since the run started, measured on the
// harness's monotonic clock; the client library runs in the same process, so
// its lease deadlines convert onto that clock exactly.
package chaos
