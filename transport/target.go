package transport

import "strings"

// DialTarget is the grpc.NewClient target for a peer's host:port. It names
// grpc's passthrough resolver, which leaves the name to the dialer, so every
// connection attempt looks the name up afresh and a peer is found again as
// soon as it answers, on the reconnect backoff set here (at most 1 s).
// grpc.NewClient's default, the dns resolver, keeps its own schedule
// instead: after a failed lookup (a container or pod that is down has no
// DNS record) it waits 1 s, then 1.6 times longer each time, up to 120 s,
// and after a good one it does not look again for 30 s, so a node that came
// back (on a new address, perhaps) stayed unreachable from its peers for as
// long as it had been gone. A target that already names a scheme
// ("dns:///...", "unix:...") is left as it is.
func DialTarget(addr string) string {
	if strings.Contains(addr, ":///") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	return "passthrough:///" + addr
}
