// Package leasecluster is a Raft-replicated, clustered lease service: clients
// are granted leases with a TTL, keep them alive, and attach named items to
// them; when a lease is revoked or expires its items are deleted on every
// node. The root package holds only the black-box cluster tests; the service
// lives in server/, the lease table in lessor/, the client library in
// client/ and the binary in cmd/leasecluster. See README.md.
package leasecluster
