// Package client is the Go client of leasecluster: it finds the Raft leader
// among a set of endpoints, follows LeaderHint redirects, retries with one
// request ID per logical operation (the server deduplicates, so every call is
// safe to retry after an unknown outcome), renews many leases over a single
// KeepAlive stream, and builds locks with fencing tokens on top of leases.
//
// Usage:
//
//	c, err := client.New(ctx, []string{"10.0.0.1:7000", "10.0.0.2:7000"})
//	if err != nil { ... }
//	defer c.Close()
//	lease, err := c.Grant(ctx, 10*time.Second)
//	ka, err := c.KeepAlive(ctx, lease.ID)   // renewed every TTL/3
//	item, err := c.Attach(ctx, lease.ID, "jobs/42", "worker-7")
//	select {
//	case <-ka.Jeopardy(): // renewals are not getting through; slow down
//	case <-ka.Lost():     // stop acting on the lease: it may be gone
//	}
//
// Errors are sentinels (ErrLeaseNotFound, ErrItemHeld, ErrNoLeader, ...)
// usable with errors.Is; they are mapped from gRPC status codes in one place
// (errors.go). The returned errors also carry the gRPC status
// (status.FromError works on them).
//
// Time: a kept-alive lease has a local deadline, the client-clock send time
// of the last acknowledged renewal plus the TTL, less a safety margin
// (SafetyMargin) for clock-rate drift between client and server. ARCHITECTURE.md
// rule 2 (no early expiry) guarantees the server keeps the lease at least that
// long; past it the lease is reported lost.
//
// The package never imports hashicorp/raft: it speaks only the public gRPC
// API in leasepb.
package client
