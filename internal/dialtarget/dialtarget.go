// Package dialtarget turns a host:port into the grpc.NewClient target that
// every connection of the project uses: the nodes' connections to their
// peers (transport, server) and the client library's to its endpoints.
package dialtarget

import "strings"

// For is the grpc.NewClient target for addr. It names grpc's passthrough
// resolver, which leaves the name to the dialer, so every connection attempt
// looks the name up afresh and a node is found again as soon as it answers,
// on the caller's reconnect backoff. grpc.NewClient's default, the dns
// resolver, keeps its own schedule instead: after a failed lookup (a
// container or pod that is down has no DNS record) it waits 1 s, then 1.6
// times longer each time, up to 120 s, and after a good one it does not look
// again for 30 s, so a node that came back (on a new address, perhaps)
// stayed unreachable for as long as it had been gone. A target that already
// names a scheme ("dns:///...", "unix:...") is left as it is.
func For(addr string) string {
	if strings.Contains(addr, ":///") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	return "passthrough:///" + addr
}
