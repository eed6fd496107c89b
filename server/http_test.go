package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHTTPPprofKeepsKeysVerbatim: with pprof on, item keys still reach the
// API exactly as sent (no redirect, no path cleaning) on PUT, GET and
// DELETE, and pprof answers under /debug/pprof/. (Bodies over the limit are
// leasehttp's: TestBodyTooLargeOverTCP.)
func TestHTTPPprofKeepsKeysVerbatim(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.Pprof = true
	})
	_, n := c.leader()
	base := "http://" + n.HTTPAddr()
	// Redirects are returned, not followed: a followed redirect would act
	// on another key.
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(hc.CloseIdleConnections)
	do := func(method, path, body string) (int, map[string]any, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out, string(raw)
	}

	code, out, raw := do("POST", "/v1/leases", `{"ttl_ms":60000}`)
	if code != 200 {
		t.Fatalf("grant: %d %s", code, raw)
	}
	lease, _ := out["id"].(string)
	keys := []string{"lock//main", "a/./b", "a/../b", "..", "x/", "/y"}
	for _, key := range keys {
		path := "/v1/items/" + key
		if code, out, raw := do("PUT", path, `{"lease_id":"`+lease+`","value":"v"}`); code != 200 || out["key"] != key {
			t.Fatalf("PUT %s: %d %s, want 200 with key %q", path, code, raw, key)
		}
		if code, out, raw := do("GET", path, ""); code != 200 || out["key"] != key || out["lease_id"] != lease {
			t.Fatalf("GET %s: %d %s", path, code, raw)
		}
	}
	if code, out, raw := do("GET", "/v1/leases/"+lease, ""); code != 200 || len(out["items"].([]any)) != len(keys) {
		t.Fatalf("lease holds %s, want the %d keys as sent", raw, len(keys))
	}
	for _, key := range keys {
		path := "/v1/items/" + key
		if code, _, raw := do("DELETE", path+"?lease_id="+lease, ""); code != 200 {
			t.Fatalf("DELETE %s: %d %s", path, code, raw)
		}
	}
	if code, _, raw := do("GET", "/v1/items/lock/main", ""); code != 404 {
		t.Fatalf("the cleaned key exists: %d %s", code, raw)
	}

	if code, _, raw := do("GET", "/debug/pprof/", ""); code != 200 || !strings.Contains(raw, "goroutine") {
		t.Fatalf("pprof index: %d %.200s", code, raw)
	}
	if code, _, raw := do("GET", "/debug/pprof/goroutine?debug=1", ""); code != 200 || !strings.Contains(raw, "goroutine profile") {
		t.Fatalf("pprof goroutine: %d %.200s", code, raw)
	}
	if code, _, raw := do("GET", "/debug/pprof/cmdline", ""); code != 200 || raw == "" {
		t.Fatalf("pprof cmdline: %d %q", code, raw)
	}
	if code, _, _ := do("GET", "/debug/pprof", ""); code != http.StatusMovedPermanently {
		t.Fatalf("/debug/pprof: %d, want a redirect to /debug/pprof/", code)
	}
}
