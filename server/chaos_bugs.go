package server

// The broken-server variants that chaos builds select with
// LEASECLUSTER_CHAOS_BUG (see chaos.go). Normal builds only carry the names.
const (
	bugSkipVerify       = "skip-verify"        // renewals acknowledged without VerifyLeader
	bugNoExtend         = "no-extend"          // Promote without the extension
	bugEarlyExpiry      = "early-expiry"       // leases expire about 13% before their TTL
	bugLeaderOnlyRevoke = "leader-only-revoke" // client revokes applied on the leader only
	bugWallClock        = "wall-clock"         // the lessor measures on the wall clock
)
