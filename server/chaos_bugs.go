package server

// The broken-server variants that chaos builds select with
// LEASECLUSTER_CHAOS_BUG (see chaos.go). Normal builds only carry the names.
const (
	bugSkipVerify       = "skip-verify"        // renewals acknowledged without VerifyLeader
	bugNoExtend         = "no-extend"          // Promote without the extension
	bugEarlyExpiry      = "early-expiry"       // leases are revoked 15% of their TTL early
	bugLeaderOnlyRevoke = "leader-only-revoke" // client revokes applied on the leader only
	bugWallClock        = "wall-clock"         // the lessor measures on the wall clock
)
