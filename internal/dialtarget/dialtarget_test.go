package dialtarget

import "testing"

func TestFor(t *testing.T) {
	for addr, want := range map[string]string{
		"n1:7001":             "passthrough:///n1:7001",
		"10.0.0.1:7001":       "passthrough:///10.0.0.1:7001",
		"[::1]:7001":          "passthrough:///[::1]:7001",
		"dns:///n1:7001":      "dns:///n1:7001",
		"unix:/run/lc.sock":   "unix:/run/lc.sock",
		"unix:///run/lc.sock": "unix:///run/lc.sock",
	} {
		if got := For(addr); got != want {
			t.Errorf("For(%q) = %q, want %q", addr, got, want)
		}
	}
}
