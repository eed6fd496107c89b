package leasehttp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/leasecluster/leasecluster/leasehttp"
	"github.com/leasecluster/leasecluster/limits"
)

// keysWithSegments are keys that path cleaning would change: each is stored
// verbatim, on every item route.
var keysWithSegments = []string{"lock//main", "a/./b", "a/../b", ".", "..", "./x", "x/..", "x/", "/x", "//", "%2e%2e/c"}

// TestKeysVerbatim: keys with "//", "." and ".." segments reach PUT, GET
// and DELETE exactly as sent, in the handler and through a real server and
// Go's HTTP client (which does not clean paths either).
func TestKeysVerbatim(t *testing.T) {
	_, h := setup(t, leasehttp.Config{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	viaTCP := func(t *testing.T, method, path, body string) reply {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		// No redirect may be followed: a redirected item request would
		// act on another key.
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		r := reply{code: resp.StatusCode, hdr: resp.Header, raw: string(raw)}
		_ = json.Unmarshal(raw, &r.body)
		return r
	}
	direct := func(t *testing.T, method, path, body string) reply { t.Helper(); return call(t, h, method, path, body) }
	for name, send := range map[string]func(t *testing.T, method, path, body string) reply{"handler": direct, "tcp": viaTCP} {
		t.Run(name, func(t *testing.T) {
			lease := call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`).body["id"].(string)
			for _, key := range keysWithSegments {
				path := "/v1/items/" + key
				sent, _ := url.PathUnescape(key) // "%2e%2e" is sent escaped and decoded
				r := send(t, "PUT", path, `{"lease_id":"`+lease+`","value":"v"}`)
				want(t, r, 200, "")
				if r.body["key"] != sent {
					t.Fatalf("PUT %s stored key %q, want %q", path, r.body["key"], sent)
				}
				r = send(t, "GET", path, "")
				want(t, r, 200, "")
				if r.body["key"] != sent || r.body["lease_id"] != lease {
					t.Fatalf("GET %s = %s", path, r.raw)
				}
			}
			r := call(t, h, "GET", "/v1/leases/"+lease, "")
			items, _ := r.body["items"].([]any)
			if len(items) != len(keysWithSegments) {
				t.Fatalf("lease holds %v, want the %d keys as sent", items, len(keysWithSegments))
			}
			for _, key := range keysWithSegments {
				path := "/v1/items/" + key
				want(t, send(t, "DELETE", path+"?lease_id="+lease, ""), 200, "")
				want(t, send(t, "GET", path, ""), 404, "NOT_FOUND")
			}
			// Another key with the same cleaned path was never touched.
			want(t, send(t, "GET", "/v1/items/lock/main", ""), 404, "NOT_FOUND")
		})
	}
}

// TestLeaseIDsParseOneWay: every route that takes a lease ID, in the path,
// the query or a body, accepts decimal digits from 1 to 2^63-1 and answers
// anything else with 400 INVALID_ARGUMENT, changing nothing.
func TestLeaseIDsParseOneWay(t *testing.T) {
	fc, h := setup(t, leasehttp.Config{})
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000,"id":"1001"}`), 200, "")
	want(t, call(t, h, "PUT", "/v1/items/held", `{"lease_id":1001}`), 200, "")

	bad := []string{"+1001", "-1", "0", "-0", "1e3", "1001.0", "0x3e9", "%201001", "1001%20", "abc", "9223372036854775808", "99999999999999999999999"}
	routes := []struct {
		name   string
		method string
		path   func(id string) string
		body   func(id string) string
	}{
		{"GET lease", "GET", func(id string) string { return "/v1/leases/" + id }, nil},
		{"DELETE lease", "DELETE", func(id string) string { return "/v1/leases/" + id }, nil},
		{"keepalive", "POST", func(id string) string { return "/v1/leases/" + id + "/keepalive" }, nil},
		{"detach", "DELETE", func(id string) string { return "/v1/items/held?lease_id=" + id }, nil},
		{"attach string", "PUT", func(string) string { return "/v1/items/k" }, func(id string) string { return `{"lease_id":"` + jsonText(id) + `"}` }},
		{"attach number", "PUT", func(string) string { return "/v1/items/k" }, func(id string) string { return `{"lease_id":` + jsonText(id) + `}` }},
		{"grant string", "POST", func(string) string { return "/v1/leases" }, func(id string) string { return `{"ttl_ms":60000,"id":"` + jsonText(id) + `"}` }},
		{"grant number", "POST", func(string) string { return "/v1/leases" }, func(id string) string { return `{"ttl_ms":60000,"id":` + jsonText(id) + `}` }},
	}
	st, _ := fc.Status(0)
	index := st.GetAppliedIndex()
	for _, rt := range routes {
		for _, id := range bad {
			body := ""
			if rt.body != nil {
				if strings.HasSuffix(rt.name, "number") && strings.TrimSpace(jsonText(id)) != jsonText(id) {
					continue // spaces around a JSON number are JSON's, not the ID's
				}
				if strings.HasPrefix(rt.name, "grant") && id == "0" {
					continue // a grant's ID 0 means "the leader chooses" (below)
				}
				body = rt.body(id)
			}
			r := call(t, h, rt.method, rt.path(id), body)
			if r.code != 400 || r.body["error"].(map[string]any)["code"] != "INVALID_ARGUMENT" {
				t.Errorf("%s with id %q: %d %s, want 400 INVALID_ARGUMENT", rt.name, id, r.code, r.raw)
			}
		}
	}
	if st, _ := fc.Status(0); st.GetAppliedIndex() != index || fc.LeaseCount() != 1 {
		t.Fatalf("refused requests changed the cluster: index %d -> %d, %d leases", index, st.GetAppliedIndex(), fc.LeaseCount())
	}
	// A grant's ID 0, as a number or a string, lets the leader choose one.
	for _, body := range []string{`{"ttl_ms":60000,"id":0}`, `{"ttl_ms":60000,"id":"0"}`} {
		r := call(t, h, "POST", "/v1/leases", body)
		if r.code != 200 || r.body["id"] == "0" || r.body["id"] == nil {
			t.Fatalf("grant %s: %d %s, want 200 with a chosen ID", body, r.code, r.raw)
		}
	}
	// The good ID works on every route; leading zeros are digits too.
	want(t, call(t, h, "GET", "/v1/leases/1001", ""), 200, "")
	want(t, call(t, h, "GET", "/v1/leases/01001", ""), 200, "")
	want(t, call(t, h, "POST", "/v1/leases/1001/keepalive", ""), 200, "")
	want(t, call(t, h, "PUT", "/v1/items/k", `{"lease_id":"1001"}`), 200, "")
	want(t, call(t, h, "DELETE", "/v1/items/k?lease_id=1001", ""), 200, "")
	want(t, call(t, h, "DELETE", "/v1/items/held?lease_id=1001", ""), 200, "")
	want(t, call(t, h, "DELETE", "/v1/leases/1001", ""), 200, "")
	// The largest ID is in range (so not found), not refused.
	want(t, call(t, h, "GET", "/v1/leases/9223372036854775807", ""), 404, "NOT_FOUND")
	// A grant without an ID, or with a null one, lets the leader choose.
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000,"id":null}`), 200, "")
}

// jsonText is id as it appears inside a JSON body: percent escapes are for
// paths, so "%201001" becomes " 1001".
func jsonText(id string) string {
	s, err := url.PathUnescape(id)
	if err != nil {
		return id
	}
	return s
}

// countingBody records whether anything read it.
type countingBody struct {
	io.Reader
	read int
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	b.read += n
	return n, err
}

// TestDeclaredBodyTooLarge: a Content-Length over limits.MaxBodyBytes is
// answered 413 before any of the body is read, on every route.
func TestDeclaredBodyTooLarge(t *testing.T) {
	fc, h := setup(t, leasehttp.Config{})
	for _, rt := range []struct{ method, path string }{
		{"POST", "/v1/leases"}, {"PUT", "/v1/items/k"}, {"POST", "/v1/leases/1/keepalive"}, {"GET", "/v1/status"},
	} {
		body := &countingBody{Reader: strings.NewReader(strings.Repeat("x", 3<<20))}
		req := httptest.NewRequest(rt.method, rt.path, body)
		req.ContentLength = 3 << 20
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 413 || !strings.Contains(rec.Body.String(), `"PAYLOAD_TOO_LARGE"`) {
			t.Errorf("%s %s: %d %s, want 413 PAYLOAD_TOO_LARGE", rt.method, rt.path, rec.Code, rec.Body.String())
		}
		if body.read != 0 {
			t.Errorf("%s %s: %d body bytes read before answering 413", rt.method, rt.path, body.read)
		}
	}
	if fc.LeaseCount() != 0 {
		t.Fatalf("%d leases after refused grants", fc.LeaseCount())
	}
}

// TestBodyTooLargeOverTCP sends 3 MB bodies that are not JSON to a real
// server: 413 every time, whether the length is declared or the body is
// chunked (then found over the limit while reading, before parsing).
func TestBodyTooLargeOverTCP(t *testing.T) {
	fc, h := setup(t, leasehttp.Config{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	payload := strings.Repeat("not json ", 3<<20/9)
	for _, chunked := range []bool{false, true} {
		for _, rt := range []struct{ method, path string }{{"POST", "/v1/leases"}, {"PUT", "/v1/items/k"}} {
			var body io.Reader = strings.NewReader(payload)
			if chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequest(rt.method, srv.URL+rt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("%s %s (chunked %v): %v", rt.method, rt.path, chunked, err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || !strings.Contains(string(raw), `"PAYLOAD_TOO_LARGE"`) {
				t.Errorf("%s %s (chunked %v): %d %s, want 413", rt.method, rt.path, chunked, resp.StatusCode, raw)
			}
			if !chunked && !strings.Contains(string(raw), strconv.Itoa(len(payload))) {
				t.Errorf("%s %s: 413 body %s does not name the declared length", rt.method, rt.path, raw)
			}
		}
	}
	if fc.LeaseCount() != 0 {
		t.Fatalf("%d leases after refused grants", fc.LeaseCount())
	}
}

// TestLimitsAtTheEdges: the HTTP API refuses exactly what package limits
// refuses.
func TestLimitsAtTheEdges(t *testing.T) {
	_, h := setup(t, leasehttp.Config{})
	lease := call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`).body["id"].(string)
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":`+strconv.FormatInt(limits.MaxTTLMs+1, 10)+`}`), 400, "INVALID_ARGUMENT")
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":`+strconv.Itoa(limits.MinTTLMs-1)+`}`), 400, "INVALID_ARGUMENT")
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":`+strconv.Itoa(limits.MinTTLMs)+`}`), 200, "")
	key := strings.Repeat("k", limits.MaxKeyBytes)
	for _, method := range []string{"PUT", "GET", "DELETE"} {
		r := call(t, h, method, "/v1/items/"+key+"k?lease_id="+lease, `{"lease_id":"`+lease+`"}`)
		want(t, r, 400, "INVALID_ARGUMENT")
		if !strings.Contains(r.raw, "1024 bytes") {
			t.Errorf("%s with a long key: message %s does not name the limit", method, r.raw)
		}
	}
	want(t, call(t, h, "PUT", "/v1/items/"+key, `{"lease_id":"`+lease+`","value":"`+strings.Repeat("v", limits.MaxValueBytes)+`"}`), 200, "")
	want(t, call(t, h, "PUT", "/v1/items/"+key, `{"lease_id":"`+lease+`","value":"`+strings.Repeat("v", limits.MaxValueBytes+1)+`"}`), 400, "INVALID_ARGUMENT")
}
