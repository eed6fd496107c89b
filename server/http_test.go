package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// httpReply is one HTTP answer: status, headers, JSON body (if any), text.
type httpReply struct {
	code int
	hdr  http.Header
	body map[string]any
	raw  string
}

// httpClient returns redirects instead of following them: a followed
// redirect would act on another key.
func httpClient(t *testing.T) *http.Client {
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

func httpDo(t *testing.T, hc *http.Client, method, url, body string, hdr map[string]string) httpReply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
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
	r := httpReply{code: resp.StatusCode, hdr: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// errCode is the code of a JSON error body, "" if there is none.
func (r httpReply) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// TestHTTPPprofKeepsKeysVerbatim: with pprof on, item keys still reach the
// API exactly as sent (no redirect, no path cleaning) on PUT, GET and
// DELETE; the API's address does not serve /debug/pprof/ (a JSON 404), the
// debug listener does, a CPU profile included. (Bodies over the limit are
// leasehttp's: TestBodyTooLargeOverTCP.)
func TestHTTPPprofKeepsKeysVerbatim(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.Pprof = true
		cfg.DebugAddr = "127.0.0.1:0"
	})
	_, n := c.leader()
	base := "http://" + n.HTTPAddr()
	hc := httpClient(t)
	do := func(method, path, body string) httpReply {
		t.Helper()
		return httpDo(t, hc, method, base+path, body, nil)
	}

	r := do("POST", "/v1/leases", `{"ttl_ms":60000}`)
	if r.code != 200 {
		t.Fatalf("grant: %d %s", r.code, r.raw)
	}
	lease, _ := r.body["id"].(string)
	keys := []string{"lock//main", "a/./b", "a/../b", "..", "x/", "/y", "debug/pprof/", "/debug/pprof/heap"}
	for _, key := range keys {
		path := "/v1/items/" + key
		if r := do("PUT", path, `{"lease_id":"`+lease+`","value":"v"}`); r.code != 200 || r.body["key"] != key {
			t.Fatalf("PUT %s: %d %s, want 200 with key %q", path, r.code, r.raw, key)
		}
		if r := do("GET", path, ""); r.code != 200 || r.body["key"] != key || r.body["lease_id"] != lease {
			t.Fatalf("GET %s: %d %s", path, r.code, r.raw)
		}
	}
	if r := do("GET", "/v1/leases/"+lease, ""); r.code != 200 || len(r.body["items"].([]any)) != len(keys) {
		t.Fatalf("lease holds %s, want the %d keys as sent", r.raw, len(keys))
	}
	for _, key := range keys {
		path := "/v1/items/" + key
		if r := do("DELETE", path+"?lease_id="+lease, ""); r.code != 200 {
			t.Fatalf("DELETE %s: %d %s", path, r.code, r.raw)
		}
	}
	if r := do("GET", "/v1/items/lock/main", ""); r.code != 404 {
		t.Fatalf("the cleaned key exists: %d %s", r.code, r.raw)
	}

	// Not on the API's address any more: JSON 404s.
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof"} {
		if r := do("GET", path, ""); r.code != 404 || r.errCode() != "NOT_FOUND" {
			t.Fatalf("API address, GET %s: %d %.200s, want a JSON 404", path, r.code, r.raw)
		}
	}

	dbg := "http://" + n.DebugAddr()
	if n.DebugAddr() == "" || n.DebugAddr() == n.HTTPAddr() {
		t.Fatalf("debug address %q (HTTP %q)", n.DebugAddr(), n.HTTPAddr())
	}
	if r := httpDo(t, hc, "GET", dbg+"/debug/pprof/", "", nil); r.code != 200 || !strings.Contains(r.raw, "goroutine") {
		t.Fatalf("pprof index: %d %.200s", r.code, r.raw)
	}
	if r := httpDo(t, hc, "GET", dbg+"/debug/pprof/goroutine?debug=1", "", nil); r.code != 200 || !strings.Contains(r.raw, "goroutine profile") {
		t.Fatalf("pprof goroutine: %d %.200s", r.code, r.raw)
	}
	if r := httpDo(t, hc, "GET", dbg+"/debug/pprof/cmdline", "", nil); r.code != 200 || r.raw == "" {
		t.Fatalf("pprof cmdline: %d %q", r.code, r.raw)
	}
	if r := httpDo(t, hc, "GET", dbg+"/debug/pprof", "", nil); r.code/100 != 3 || r.hdr.Get("Location") != "/debug/pprof/" {
		t.Fatalf("/debug/pprof: %d to %q, want a redirect to /debug/pprof/", r.code, r.hdr.Get("Location"))
	}
	// A CPU profile runs and is written (pprof extends the write deadline
	// by its duration).
	if r := httpDo(t, hc, "GET", dbg+"/debug/pprof/profile?seconds=1", "", nil); r.code != 200 || r.hdr.Get("Content-Type") != "application/octet-stream" || len(r.raw) == 0 {
		t.Fatalf("CPU profile: %d %q %.100q", r.code, r.hdr.Get("Content-Type"), r.raw)
	}
	if d := n.debug.srv; d.WriteTimeout != debugWriteTimeout || d.ReadHeaderTimeout == 0 || d.ReadTimeout == 0 || d.IdleTimeout == 0 {
		t.Fatalf("debug server timeouts: header %v read %v write %v idle %v", d.ReadHeaderTimeout, d.ReadTimeout, d.WriteTimeout, d.IdleTimeout)
	}
	// The API server has its timeouts.
	s := n.http.srv
	if s.ReadHeaderTimeout != httpReadHeaderTimeout || s.ReadTimeout != httpReadTimeout || s.WriteTimeout != httpWriteTimeout || s.IdleTimeout != httpIdleTimeout {
		t.Fatalf("API server timeouts: header %v read %v write %v idle %v", s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout)
	}
	if httpWriteTimeout <= 5*time.Second {
		t.Fatalf("write timeout %v leaves no room after the 5 s request timeout", httpWriteTimeout)
	}

	// The debug listener stops with the node.
	addr := n.DebugAddr()
	c.setNode(0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatalf("debug listener %s still accepts after the node stopped", addr)
	}
}

// TestHTTPPprofOffAndDebugAddrTaken: without Pprof no debug listener runs;
// with a debug address already taken the node still starts and serves its
// API, without profiles (DebugAddr is empty).
func TestHTTPPprofOffAndDebugAddrTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	c := newTestCluster(t, 2, func(cfg *Config) {
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.DebugAddr = taken.Addr().String()
		cfg.Pprof = cfg.Name == "n2"
	})
	c.leader()
	for _, n := range c.running() {
		if n.DebugAddr() != "" {
			t.Fatalf("%s serves profiles on %s", n.Name(), n.DebugAddr())
		}
		if r := httpDo(t, httpClient(t), "GET", "http://"+n.HTTPAddr()+"/v1/status", "", nil); r.code != 200 {
			t.Fatalf("%s: status %d %s", n.Name(), r.code, r.raw)
		}
	}
}

// TestHTTPOriginsAndErrors, through a node: a browser's cross-site form post
// (text/plain) is refused with a JSON 403 and grants nothing, a listed
// origin is served with CORS headers, a program without Origin as before;
// errors that net/http's ServeMux would answer in text are JSON.
func TestHTTPOriginsAndErrors(t *testing.T) {
	const ops = "https://ops.example.com"
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.AllowedOrigins = []string{ops}
	})
	_, n := c.leader()
	base := "http://" + n.HTTPAddr()
	hc := httpClient(t)

	form := map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}
	r := httpDo(t, hc, "POST", base+"/v1/leases", `{"ttl_ms":60000}`, form)
	if r.code != 403 || r.errCode() != "PERMISSION_DENIED" || !strings.Contains(r.raw, "https://evil.example") || !strings.Contains(r.raw, "--allowed-origins") {
		t.Fatalf("cross-site form post: %d %s", r.code, r.raw)
	}
	if r := httpDo(t, hc, "OPTIONS", base+"/v1/leases", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}); r.code != 403 {
		t.Fatalf("preflight from another origin: %d %s", r.code, r.raw)
	}
	if r := httpDo(t, hc, "GET", base+"/v1/leases", "", nil); r.code != 200 || len(r.body["leases"].([]any)) != 0 {
		t.Fatalf("leases after the refused post: %d %s", r.code, r.raw)
	}
	r = httpDo(t, hc, "POST", base+"/v1/leases", `{"ttl_ms":60000}`, map[string]string{"Origin": ops})
	if r.code != 200 || r.hdr.Get("Access-Control-Allow-Origin") != ops {
		t.Fatalf("listed origin: %d %v %s", r.code, r.hdr, r.raw)
	}
	if r := httpDo(t, hc, "OPTIONS", base+"/v1/items/k", "", map[string]string{"Origin": ops, "Access-Control-Request-Method": "PUT"}); r.code != 204 || r.hdr.Get("Access-Control-Allow-Origin") != ops {
		t.Fatalf("preflight from the listed origin: %d %v", r.code, r.hdr)
	}
	if r := httpDo(t, hc, "POST", base+"/v1/leases", `{"ttl_ms":60000}`, map[string]string{"Content-Type": "text/plain"}); r.code != 200 {
		t.Fatalf("a program's grant: %d %s", r.code, r.raw)
	}

	for _, tc := range []struct {
		method, path string
		code         int
		errCode      string
	}{
		{"GET", "/nothing", 404, "NOT_FOUND"},
		{"GET", "/v1/./status", 404, "NOT_FOUND"},
		{"GET", "/v1//leases", 404, "NOT_FOUND"},
		{"PATCH", "/v1/leases", 405, "METHOD_NOT_ALLOWED"},
		{"GET", "/v1/leases/abc", 400, "INVALID_ARGUMENT"},
		{"GET", "/v1/items/%FF", 400, "INVALID_ARGUMENT"},
	} {
		r := httpDo(t, hc, tc.method, base+tc.path, "", nil)
		if r.code != tc.code || r.errCode() != tc.errCode || r.hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q %s, want %d %s in JSON", tc.method, tc.path, r.code, r.hdr.Get("Content-Type"), r.raw, tc.code, tc.errCode)
		}
	}
	if r := httpDo(t, hc, "PATCH", base+"/v1/leases", "", nil); r.hdr.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("405 Allow %q", r.hdr.Get("Allow"))
	}
}

// TestHTTPServerOwnAnswers documents what http.Server answers before any
// handler runs, in its own plain text (ARCHITECTURE.md, HTTP contract):
// 431 for headers over its MaxHeaderBytes (1 MiB by default; written
// straight to the connection, no hook makes it JSON) and 400 for a
// malformed request. If this test fails because they became JSON, update
// the contract.
func TestHTTPServerOwnAnswers(t *testing.T) {
	// After such an answer net/http keeps the connection half-closed for
	// 500 ms (its RST avoidance), in a goroutine that outlives the server's
	// Close: wait for it to end, so that TestMain's leak check stays exact.
	t.Cleanup(func() {
		err := eventually(10*time.Second, func() error {
			buf := make([]byte, 1<<20)
			if bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("net/http.(*conn).closeWriteAndWait")) {
				return errors.New("a connection is still closing")
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	_, n := c.leader()
	raw := func(req string) (*http.Response, string) {
		t.Helper()
		conn, err := net.Dial("tcp", n.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := raw("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20+8192) + "\r\n\r\n")
	if resp.StatusCode != 431 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("oversized headers: %d %q %.100s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = raw("GET /v1/status HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
	if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("malformed header: %d %q %.100s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// A request that reaches the handler, however odd, is answered in JSON.
	resp, body = raw("GET /v1/status/.. HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("non-canonical path: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestHTTPConfigValidate: the debug address and the allowed origins are
// checked before a node starts.
func TestHTTPConfigValidate(t *testing.T) {
	base := Config{Name: "n1", DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:7001"}
	for _, ok := range []func(*Config){
		func(c *Config) { c.DebugAddr = "127.0.0.1:6061" },
		func(c *Config) { c.DebugAddr = "[::1]:0" },
		func(c *Config) { c.AllowedOrigins = []string{"https://ops.example.com", "http://127.0.0.1:3000"} },
	} {
		cfg := base
		ok(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.DebugAddr = "6060" },
		func(c *Config) { c.AllowedOrigins = []string{"*"} },
		func(c *Config) { c.AllowedOrigins = []string{"https://ops.example.com/"} },
		func(c *Config) { c.AllowedOrigins = []string{"null"} },
	} {
		cfg := base
		bad(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("debug addr %q, origins %q: valid, want an error", cfg.DebugAddr, cfg.AllowedOrigins)
		}
	}
}
