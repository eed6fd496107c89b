package leasehttp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/leasecluster/leasecluster/leasehttp"
)

// FuzzHandler sends arbitrary methods, paths and bodies to the HTTP API. No
// input may crash it; every /v1 answer has a status of the contract and a
// JSON body (an error body names its code); a refused request (4xx) changes
// nothing in the cluster: neither its lease count nor its applied index.
// Leases never expire inside the target (the fake cluster's clock is off),
// so the counts move only by what the requests do and every input replays
// the same way.
func FuzzHandler(f *testing.F) {
	f.Add("POST", "/v1/leases", `{"ttl_ms":5000}`)
	f.Add("POST", "/v1/leases", `{"ttl_ms":"5000","id":"9007199254740993"}`)
	f.Add("POST", "/v1/leases", `{"ttl_ms":-1}`)
	f.Add("POST", "/v1/leases", `{"ttl_ms":1e400}`)
	f.Add("POST", "/v1/leases", `{"ttl_ms":5000,"extra":1}`)
	f.Add("POST", "/v1/leases/1/keepalive", ``)
	f.Add("GET", "/v1/leases/abc", ``)
	f.Add("DELETE", "/v1/leases/-5", ``)
	f.Add("PUT", "/v1/items/a/b", `{"lease_id":"1","value":"v"}`)
	f.Add("PUT", "/v1/items/a%2Fb", `{"lease_id":1}`)
	f.Add("PUT", "/v1/items/", `{"lease_id":1}`)
	f.Add("DELETE", "/v1/items/x?lease_id=zz", ``)
	f.Add("GET", "/v1/items/%ff", ``)
	f.Add("PATCH", "/v1/leases", `{}`)
	f.Add("GET", "/v1/status", ``)
	f.Add("POST", "/v1/leases", `[`)
	f.Add("POST", "/v1/leases", `{"ttl_ms":5000}{"ttl_ms":5000}`)
	f.Add("POST", "/v1/leases", `{"ttl_ms":1}`)
	f.Add("POST", "/v1/leases", `{"ttl_ms!152000}`)
	f.Add("GET", "/v1/leases/+1001", ``)
	f.Add("PUT", "/v1/items/lock//main", `{"lease_id":"1"}`)
	f.Add("DELETE", "/v1/items/a/../b?lease_id=-1", ``)

	fc, h := setup(f, leasehttp.Config{})
	fc.NeverExpire()
	allowed := map[int]bool{200: true, 400: true, 404: true, 405: true, 409: true, 413: true, 501: true, 503: true, 504: true}
	applied := func(t *testing.T) uint64 {
		st, err := fc.Status(0)
		if err != nil {
			t.Fatal(err)
		}
		return st.GetAppliedIndex()
	}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://node"+path, strings.NewReader(body))
		if err != nil {
			return // not a request a server could receive
		}
		before, beforeIndex := fc.LeaseCount(), applied(t)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !strings.HasPrefix(req.URL.Path, "/v1/") {
			return
		}
		if !allowed[rec.Code] {
			t.Fatalf("%s %s %q: status %d outside the contract", method, path, body, rec.Code)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s %q: status %d with a body that is not JSON: %q", method, path, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 {
			e, _ := out["error"].(map[string]any)
			if code, _ := e["code"].(string); code == "" {
				t.Fatalf("%s %s: error %d without an error code: %s", method, path, rec.Code, rec.Body.String())
			}
			if rec.Code < 500 && (fc.LeaseCount() != before || applied(t) != beforeIndex) {
				t.Fatalf("%s %s %q: refused with %d but the cluster changed: %d -> %d leases, index %d -> %d",
					method, path, body, rec.Code, before, fc.LeaseCount(), beforeIndex, applied(t))
			}
		}
	})
}
