package leasehttp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/leasecluster/leasecluster/leasehttp"
)

// send makes one request with headers through the handler.
func send(t *testing.T, h http.Handler, method, path, body string, hdr map[string][]string) reply {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := reply{code: rec.Code, hdr: rec.Header(), raw: rec.Body.String()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, path, r.raw, err)
		}
	}
	return r
}

func errMessage(r reply) string {
	e, _ := r.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// TestOrigins: a browser request from an origin that is not listed is
// refused with 403 before anything happens, on every route and method (the
// cross-site form post with a text/plain body included); programs, which
// send no Origin, are served as before; a listed origin is served with the
// CORS headers and gets its preflights answered.
func TestOrigins(t *testing.T) {
	const ops = "https://ops.example.com"
	fc, h := setup(t, leasehttp.Config{AllowedOrigins: []string{ops, "*", "null"}})
	textPlain := map[string][]string{"Content-Type": {"text/plain"}}
	from := func(origin string) map[string][]string {
		return map[string][]string{"Origin": {origin}, "Content-Type": {"text/plain"}}
	}

	for _, origin := range []string{"https://evil.example", "null", "https://ops.example.com.evil.example", "http://ops.example.com", "HTTPS://OPS.EXAMPLE.COM"} {
		for _, rt := range []struct{ method, path, body string }{
			{"POST", "/v1/leases", `{"ttl_ms":60000}`},
			{"POST", "/v1/leases/1/keepalive", ""},
			{"DELETE", "/v1/leases/1", ""},
			{"PUT", "/v1/items/k", `{"lease_id":"1"}`},
			{"GET", "/v1/leases", ""},
			{"GET", "/healthz", ""},
			{"GET", "/no/route", ""},
		} {
			r := send(t, h, rt.method, rt.path, rt.body, from(origin))
			want(t, r, 403, "PERMISSION_DENIED")
			if m := errMessage(r); !strings.Contains(m, origin) || !strings.Contains(m, "--allowed-origins") {
				t.Fatalf("%s %s from %s: message %q names neither the origin nor the flag", rt.method, rt.path, origin, m)
			}
			if r.hdr.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("%s %s from %s: CORS header on a refusal", rt.method, rt.path, origin)
			}
		}
		r := send(t, h, "OPTIONS", "/v1/leases", "", map[string][]string{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}})
		want(t, r, 403, "PERMISSION_DENIED")
	}
	// Two Origin headers, one of them listed: refused.
	want(t, send(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`, map[string][]string{"Origin": {ops, "https://evil.example"}}), 403, "PERMISSION_DENIED")
	// A cross-site link or subresource sends no Origin, only Sec-Fetch-Site.
	r := send(t, h, "GET", "/v1/leases", "", map[string][]string{"Sec-Fetch-Site": {"cross-site"}})
	want(t, r, 403, "PERMISSION_DENIED")
	if !strings.Contains(errMessage(r), "--allowed-origins") {
		t.Fatalf("cross-site refusal %q does not name the flag", errMessage(r))
	}
	if n := fc.LeaseCount(); n != 0 {
		t.Fatalf("%d leases after refused browser requests", n)
	}

	// No Origin (curl, the CLI, programs): served, whatever the content type.
	want(t, send(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`, textPlain), 200, "")
	for _, site := range []string{"none", "same-origin", "same-site"} {
		want(t, send(t, h, "GET", "/v1/leases", "", map[string][]string{"Sec-Fetch-Site": {site}}), 200, "")
	}

	// The listed origin: served with CORS headers, errors included.
	r = send(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`, from(ops))
	want(t, r, 200, "")
	if r.hdr.Get("Access-Control-Allow-Origin") != ops || !strings.Contains(strings.Join(r.hdr.Values("Vary"), ","), "Origin") {
		t.Fatalf("allowed origin: headers %v", r.hdr)
	}
	r = send(t, h, "GET", "/v1/leases/12345", "", from(ops))
	want(t, r, 404, "NOT_FOUND")
	if r.hdr.Get("Access-Control-Allow-Origin") != ops {
		t.Fatalf("allowed origin's error without Access-Control-Allow-Origin: %v", r.hdr)
	}
	r = send(t, h, "OPTIONS", "/v1/items/a/b", "", map[string][]string{"Origin": {ops}, "Access-Control-Request-Method": {"PUT"}, "Access-Control-Request-Headers": {"content-type"}})
	if r.code != 204 || r.hdr.Get("Access-Control-Allow-Origin") != ops || !strings.Contains(r.hdr.Get("Access-Control-Allow-Methods"), "PUT") ||
		r.hdr.Get("Access-Control-Allow-Headers") != "Content-Type" || r.hdr.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight: %d %v", r.code, r.hdr)
	}
	if n := fc.LeaseCount(); n != 2 {
		t.Fatalf("%d leases, want the 2 granted", n)
	}

	// Nothing listed (the default): every Origin is refused.
	_, h0 := setup(t, leasehttp.Config{})
	want(t, send(t, h0, "POST", "/v1/leases", `{"ttl_ms":60000}`, from(ops)), 403, "PERMISSION_DENIED")
	want(t, send(t, h0, "POST", "/v1/leases", `{"ttl_ms":60000}`, textPlain), 200, "")
}

func TestCheckOrigin(t *testing.T) {
	for _, ok := range []string{"https://ops.example.com", "http://127.0.0.1:3000", "http://localhost:8080", "https://[::1]:8443", "https://xn--bcher-kva.example"} {
		if err := leasehttp.CheckOrigin(ok); err != nil {
			t.Errorf("CheckOrigin(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "*", "https://*.example.com", "null", "ops.example.com", "ftp://ops.example.com",
		"https://ops.example.com/", "https://ops.example.com/app", "https://ops.example.com?x", "https://user@ops.example.com",
		"https://Ops.example.com", "https://ops.example.com:443", "http://ops.example.com:80", "https://bücher.example", "https://ops.example.com:x"} {
		if err := leasehttp.CheckOrigin(bad); err == nil {
			t.Errorf("CheckOrigin(%q) = nil, want an error", bad)
		}
	}
}

// TestInvalidUTF8 sends real bytes over TCP: a value holding \xff inside
// its JSON string, a lone surrogate escape, and keys with %FF. Each is 400
// INVALID_ARGUMENT and nothing is stored; encoding/json alone would have
// stored U+FFFD in their place. Valid UTF-8, U+FFFD itself included, is
// stored as sent.
func TestInvalidUTF8(t *testing.T) {
	_, h := setup(t, leasehttp.Config{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	do := func(method, path string, body []byte) reply {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		r := reply{code: resp.StatusCode, hdr: resp.Header, raw: string(raw)}
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, path, r.code, raw)
		}
		return r
	}
	lease := do("POST", "/v1/leases", []byte(`{"ttl_ms":60000}`)).body["id"].(string)

	for name, body := range map[string][]byte{
		"raw 0xff":            []byte("{\"lease_id\":\"" + lease + "\",\"value\":\"a\xffb\"}"),
		"raw truncated UTF-8": []byte("{\"lease_id\":\"" + lease + "\",\"value\":\"\xe2\x82\"}"),
		"lone high surrogate": []byte(`{"lease_id":"` + lease + `","value":"a\ud800b"}`),
		"lone low surrogate":  []byte(`{"lease_id":"` + lease + `","value":"\udc00"}`),
		"reversed pair":       []byte(`{"lease_id":"` + lease + `","value":"\ude00\ud83d"}`),
		"0xff outside value":  []byte("{\"lease_id\":\"" + lease + "\",\"value\":\"v\"}\xff"),
	} {
		r := do("PUT", "/v1/items/k", body)
		want(t, r, 400, "INVALID_ARGUMENT")
		if !strings.Contains(errMessage(r), "UTF-8") {
			t.Errorf("%s: message %q does not say UTF-8", name, errMessage(r))
		}
		want(t, do("GET", "/v1/items/k", nil), 404, "NOT_FOUND")
	}
	for _, path := range []string{"/v1/items/%FF", "/v1/items/a%FFb", "/v1/items/%C3", "/v1/items/x/%ED%A0%80"} {
		for _, method := range []string{"PUT", "GET", "DELETE"} {
			r := do(method, path+"?lease_id="+lease, []byte(`{"lease_id":"`+lease+`"}`))
			want(t, r, 400, "INVALID_ARGUMENT")
			if !strings.Contains(errMessage(r), "UTF-8") {
				t.Errorf("%s %s: message %q does not say UTF-8", method, path, errMessage(r))
			}
		}
	}
	for key, value := range map[string]string{"%C3%A9t%C3%A9": `\ud83d\ude00 and \\ud800`, "ok": "\uFFFD as sent", "esc": `\u00e9\n\"`} {
		r := do("PUT", "/v1/items/"+key, []byte(`{"lease_id":"`+lease+`","value":"`+value+`"}`))
		want(t, r, 200, "")
		var sent string
		if err := json.Unmarshal([]byte(`"`+value+`"`), &sent); err != nil {
			t.Fatal(err)
		}
		if got := do("GET", "/v1/items/"+key, nil).body["value"]; got != sent {
			t.Errorf("key %s: stored %q, want %q", key, got, sent)
		}
	}
}

// TestJSONErrorsEverywhere: every answer of the handler that is an error
// has the JSON error body, including those a ServeMux or net/http would
// give in text: unknown routes, paths ServeMux would redirect, wrong
// methods, malformed requests, oversized bodies, and panics (500, logged).
// (What http.Server answers before any handler runs, such as 431 for
// oversized headers, is server/http_test.go's.)
func TestJSONErrorsEverywhere(t *testing.T) {
	var mu sync.Mutex
	var panics []any
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("late") {
			_, _ = w.Write([]byte("partial"))
		}
		panic("metrics broke")
	})
	_, h := setup(t, leasehttp.Config{Metrics: metrics, OnPanic: func(_ *http.Request, v any, stack []byte) {
		mu.Lock()
		defer mu.Unlock()
		if len(stack) == 0 {
			t.Error("panic logged without a stack")
		}
		panics = append(panics, v)
	}})
	for _, tc := range []struct {
		method, path, body string
		code               int
		errCode            string
	}{
		{"GET", "/nothing", "", 404, "NOT_FOUND"},
		{"GET", "/v1/leases/", "", 404, "NOT_FOUND"},
		{"GET", "/v1/./leases", "", 404, "NOT_FOUND"}, // ServeMux: a 301 in text
		{"GET", "/v1/leases/../status", "", 404, "NOT_FOUND"},
		{"GET", "//v1/status", "", 404, "NOT_FOUND"},
		{"CONNECT", "/v1/leases", "", 405, "METHOD_NOT_ALLOWED"},
		{"TRACE", "/v1/items/k", "", 405, "METHOD_NOT_ALLOWED"},
		{"POST", "/v1/leases", "ttl_ms=5000", 400, "INVALID_ARGUMENT"}, // a form body
		{"POST", "/v1/leases", "", 400, "INVALID_ARGUMENT"},
		{"GET", "/v1/leases/0x10", "", 400, "INVALID_ARGUMENT"},
		{"DELETE", "/v1/items/k?lease_id=%FF", "", 400, "INVALID_ARGUMENT"},
		{"POST", "/v1/leases", `{"ttl_ms":` + strings.Repeat("1", 2<<20) + `}`, 413, "PAYLOAD_TOO_LARGE"},
		{"GET", "/metrics", "", 500, "INTERNAL"},
	} {
		r := call(t, h, tc.method, tc.path, tc.body)
		want(t, r, tc.code, tc.errCode)
		if ct := r.hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, ct)
		}
	}
	if r := call(t, h, "GET", "/metrics", ""); strings.Contains(r.raw, "metrics broke") {
		t.Errorf("the panic value reached the client: %s", r.raw)
	}
	mu.Lock()
	if len(panics) != 2 || panics[0] != "metrics broke" {
		t.Errorf("panics logged: %v, want the 2 of the metrics handler", panics)
	}
	mu.Unlock()

	// A panic after the response has started cannot change its status: the
	// connection is cut, so the client sees a failure, not a short 200.
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL + "/metrics?late=1")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a panic after the first write looked like a complete response")
	}
}
