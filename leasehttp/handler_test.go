package leasehttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/client/clienttest"
	"github.com/leasecluster/leasecluster/leasehttp"
	"github.com/leasecluster/leasecluster/leasepb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// localNode is node 0 of the fake cluster, the node "running" the handler.
type localNode struct{ fc *clienttest.Cluster }

func (n localNode) Status(context.Context) (*leasepb.StatusResponse, error) { return n.fc.Status(0) }
func (n localNode) Ready() error {
	if n.fc.Leader() < 0 {
		return errors.New("no leader")
	}
	return nil
}

// setup starts a three-node fake cluster led by node 1 and a handler on node
// 0, a follower, whose client lists node 0 first: every /v1 call is forwarded.
func setup(t testing.TB, cfg leasehttp.Config) (*clienttest.Cluster, http.Handler) {
	t.Helper()
	fc, err := clienttest.Start(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	fc.SetLeader(1)
	c, err := client.New(context.Background(), fc.Addrs(), client.WithBackoff(time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cfg.Client = c
	cfg.Local = localNode{fc}
	return fc, leasehttp.NewHandler(cfg)
}

type reply struct {
	code int
	hdr  http.Header
	body map[string]any
	raw  string
}

func call(t *testing.T, h http.Handler, method, path, body string) reply {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := reply{code: rec.Code, hdr: rec.Header(), raw: rec.Body.String()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		dec := json.NewDecoder(strings.NewReader(r.raw))
		dec.UseNumber()
		if err := dec.Decode(&r.body); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, path, r.raw, err)
		}
	}
	return r
}

// want checks the status and, for errors, the JSON error code.
func want(t *testing.T, r reply, code int, errCode string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d (body %s)", r.code, code, r.raw)
	}
	if errCode == "" {
		return
	}
	e, _ := r.body["error"].(map[string]any)
	if e == nil || e["code"] != errCode || e["message"] == "" {
		t.Fatalf("error body %s, want code %s", r.raw, errCode)
	}
}

func TestLeaseRoutes(t *testing.T) {
	fc, h := setup(t, leasehttp.Config{})
	first := strconv.FormatInt(clienttest.FirstLeaseID, 10)

	r := call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`)
	want(t, r, 200, "")
	if r.body["id"] != first || r.body["ttl_ms"] != json.Number("60000") {
		t.Fatalf("grant = %s", r.raw)
	}
	// IDs are accepted as numbers and strings, above 2^53 too.
	r = call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000,"id":9007199254740993999}`)
	want(t, r, 200, "")
	if r.body["id"] != "9007199254740993999" {
		t.Fatalf("grant with numeric id = %s", r.raw)
	}
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":"60000","id":"77"}`), 200, "")
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000,"id":"77"}`), 409, "ALREADY_EXISTS")

	for _, bad := range []string{
		``, `{}`, `{"ttl_ms":0}`, `{"ttl_ms":-5}`, `{"ttl_ms":1.5}`, `{"ttl_ms":"x"}`, `{"ttl_ms":1e3}`,
		`{"ttl_ms":60000,"id":-1}`, `{"ttl_ms":60000,"color":"red"}`, `{"ttl_ms":60000`, `{"ttl_ms":60000} {}`,
		`[1]`, `{"ttl_ms":99999999999999999999}`,
	} {
		want(t, call(t, h, "POST", "/v1/leases", bad), 400, "INVALID_ARGUMENT")
	}
	if n := fc.LeaseCount(); n != 3 {
		t.Fatalf("%d leases after bad requests, want 3", n)
	}

	r = call(t, h, "POST", "/v1/leases/"+first+"/keepalive", "")
	want(t, r, 200, "")
	if r.body["id"] != first || r.body["ttl_ms"] != json.Number("60000") || fc.Renewals(clienttest.FirstLeaseID) != 1 {
		t.Fatalf("keepalive = %s, renewals %d", r.raw, fc.Renewals(clienttest.FirstLeaseID))
	}
	want(t, call(t, h, "POST", "/v1/leases/5/keepalive", ""), 404, "NOT_FOUND")
	want(t, call(t, h, "POST", "/v1/leases/abc/keepalive", ""), 400, "INVALID_ARGUMENT")

	r = call(t, h, "GET", "/v1/leases/"+first, "")
	want(t, r, 200, "")
	if r.body["id"] != first || r.body["granted_ttl_ms"] != json.Number("60000") || r.body["remaining_ms"] == nil {
		t.Fatalf("lease = %s", r.raw)
	}
	if items, ok := r.body["items"].([]any); !ok || len(items) != 0 {
		t.Fatalf("items = %s, want []", r.raw)
	}
	want(t, call(t, h, "GET", "/v1/leases/5", ""), 404, "NOT_FOUND")

	r = call(t, h, "GET", "/v1/leases", "")
	want(t, r, 200, "")
	if ls, _ := r.body["leases"].([]any); len(ls) != 3 {
		t.Fatalf("leases = %s", r.raw)
	}

	r = call(t, h, "DELETE", "/v1/leases/"+first, "")
	want(t, r, 200, "")
	if r.raw != "{}\n" {
		t.Fatalf("revoke body %q", r.raw)
	}
	want(t, call(t, h, "DELETE", "/v1/leases/"+first, ""), 404, "NOT_FOUND")
}

func TestItemRoutes(t *testing.T) {
	fc, h := setup(t, leasehttp.Config{})
	a := call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`).body["id"].(string)
	b := call(t, h, "POST", "/v1/leases", `{"ttl_ms":60000}`).body["id"].(string)

	r := call(t, h, "PUT", "/v1/items/jobs//42", `{"lease_id":"`+a+`","value":"w1"}`)
	want(t, r, 200, "")
	if r.body["key"] != "jobs//42" || r.body["lease_id"] != a || r.body["value"] != "w1" {
		t.Fatalf("attach = %s", r.raw)
	}
	rev, ok := r.body["revision"].(string)
	if !ok || rev == "" || rev == "0" {
		t.Fatalf("revision %v must be a non-zero decimal string", r.body["revision"])
	}
	// Re-attaching to the holder updates the value and keeps the revision.
	aNum, _ := strconv.ParseInt(a, 10, 64)
	r = call(t, h, "PUT", "/v1/items/jobs//42", `{"lease_id":`+strconv.FormatInt(aNum, 10)+`,"value":"w2"}`)
	want(t, r, 200, "")
	if r.body["revision"] != rev || r.body["value"] != "w2" {
		t.Fatalf("re-attach = %s", r.raw)
	}
	r = call(t, h, "GET", "/v1/items/jobs//42", "")
	want(t, r, 200, "")
	if r.body["value"] != "w2" || r.body["revision"] != rev || r.body["lease_id"] != a {
		t.Fatalf("get = %s", r.raw)
	}
	// Percent-encoded keys are decoded.
	want(t, call(t, h, "PUT", "/v1/items/sp%20ace%2Fx", `{"lease_id":"`+a+`"}`), 200, "")
	if r := call(t, h, "GET", "/v1/items/sp%20ace/x", ""); r.body["key"] != "sp ace/x" || r.body["value"] != "" {
		t.Fatalf("get escaped = %s", r.raw)
	}

	want(t, call(t, h, "PUT", "/v1/items/jobs//42", `{"lease_id":"`+b+`"}`), 409, "FAILED_PRECONDITION")
	want(t, call(t, h, "PUT", "/v1/items/k", `{"lease_id":"12345"}`), 404, "NOT_FOUND")
	for _, bad := range []string{`{}`, `{"value":"x"}`, `{"lease_id":"x"}`, `{"lease_id":1,"extra":true}`, `{"lease_id":1,"value":5}`, `nope`} {
		want(t, call(t, h, "PUT", "/v1/items/k", bad), 400, "INVALID_ARGUMENT")
	}
	want(t, call(t, h, "PUT", "/v1/items/k", `{"lease_id":"`+a+`","value":"`+strings.Repeat("v", 64<<10+1)+`"}`), 400, "INVALID_ARGUMENT")
	want(t, call(t, h, "PUT", "/v1/items/k", `{"lease_id":"`+a+`","value":"`+strings.Repeat("v", 64<<10)+`"}`), 200, "")
	want(t, call(t, h, "PUT", "/v1/items/"+strings.Repeat("k", 1025), `{"lease_id":"`+a+`"}`), 400, "INVALID_ARGUMENT")
	want(t, call(t, h, "PUT", "/v1/items/"+strings.Repeat("k", 1024), `{"lease_id":"`+a+`"}`), 200, "")
	want(t, call(t, h, "PUT", "/v1/items/", `{"lease_id":"`+a+`"}`), 400, "INVALID_ARGUMENT")
	want(t, call(t, h, "PUT", "/v1/items/%ff", `{"lease_id":"`+a+`"}`), 400, "INVALID_ARGUMENT")
	want(t, call(t, h, "GET", "/v1/items/absent", ""), 404, "NOT_FOUND")

	// 413 for a body over 1 MiB, and nothing changes.
	big := `{"lease_id":"` + a + `","value":"` + strings.Repeat("x", 1<<20) + `"}`
	want(t, call(t, h, "PUT", "/v1/items/huge", big), 413, "PAYLOAD_TOO_LARGE")
	want(t, call(t, h, "GET", "/v1/items/huge", ""), 404, "NOT_FOUND")

	want(t, call(t, h, "DELETE", "/v1/items/jobs//42?lease_id="+b, ""), 409, "FAILED_PRECONDITION")
	want(t, call(t, h, "DELETE", "/v1/items/jobs//42", ""), 400, "INVALID_ARGUMENT")
	want(t, call(t, h, "DELETE", "/v1/items/absent?lease_id="+a, ""), 404, "NOT_FOUND")
	r = call(t, h, "DELETE", "/v1/items/jobs//42?lease_id="+a, "")
	want(t, r, 200, "")
	if r.raw != "{}\n" {
		t.Fatalf("detach body %q", r.raw)
	}
	want(t, call(t, h, "GET", "/v1/items/jobs//42", ""), 404, "NOT_FOUND")

	// Revoking a lease deletes its items.
	want(t, call(t, h, "DELETE", "/v1/leases/"+a, ""), 200, "")
	want(t, call(t, h, "GET", "/v1/items/k", ""), 404, "NOT_FOUND")
	if fc.LeaseCount() != 1 {
		t.Fatalf("%d leases, want 1", fc.LeaseCount())
	}
}

func TestMethodsAndRoutes(t *testing.T) {
	_, h := setup(t, leasehttp.Config{})
	for _, tc := range []struct{ method, path, allow string }{
		{"PATCH", "/v1/leases", "GET, HEAD, POST"},
		{"PUT", "/v1/leases/1", "DELETE, GET, HEAD"},
		{"GET", "/v1/leases/1/keepalive", "POST"},
		{"POST", "/v1/items/k", "DELETE, GET, HEAD, PUT"},
		{"POST", "/v1/status", "GET, HEAD"},
		{"DELETE", "/healthz", "GET, HEAD"},
		{"OPTIONS", "/v1/leases", "GET, HEAD, POST"}, // no Origin: not a preflight
	} {
		r := call(t, h, tc.method, tc.path, "")
		want(t, r, 405, "METHOD_NOT_ALLOWED")
		if got := r.hdr.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	want(t, call(t, h, "GET", "/v2/nothing", ""), 404, "NOT_FOUND")
	want(t, call(t, h, "GET", "/metrics", ""), 404, "NOT_FOUND")
}

func TestStatusAndProbes(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("leasecluster_up 1\n"))
	})
	_, h := setup(t, leasehttp.Config{Metrics: metrics})
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":1000}`), 200, "")
	r := call(t, h, "GET", "/v1/status", "")
	want(t, r, 200, "")
	if r.body["name"] != "node0" || r.body["role"] != "follower" || r.body["leader"] != "node1" ||
		r.body["term"] == nil || r.body["applied_index"] != json.Number("1") || len(r.body) != 5 {
		t.Fatalf("status = %s", r.raw)
	}
	if r := call(t, h, "GET", "/healthz", ""); r.code != 200 {
		t.Fatalf("healthz %d", r.code)
	}
	if r := call(t, h, "GET", "/readyz", ""); r.code != 200 {
		t.Fatalf("readyz %d", r.code)
	}
	if r := call(t, h, "GET", "/metrics", ""); r.code != 200 || r.raw != "leasecluster_up 1\n" {
		t.Fatalf("metrics %d %q", r.code, r.raw)
	}
}

// With no leader anywhere, forwarded requests get 503 with Retry-After once
// the request timeout passes; the local routes still answer.
func TestNoLeader(t *testing.T) {
	fc, h := setup(t, leasehttp.Config{RequestTimeout: 200 * time.Millisecond, RetryAfter: 2 * time.Second})
	fc.SetLeader(-1)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/leases", `{"ttl_ms":1000}`},
		{"POST", "/v1/leases/5/keepalive", ""},
		{"GET", "/v1/items/k", ""},
	} {
		r := call(t, h, tc.method, tc.path, tc.body)
		want(t, r, 503, "UNAVAILABLE")
		if r.hdr.Get("Retry-After") != "2" {
			t.Fatalf("%s %s: Retry-After %q", tc.method, tc.path, r.hdr.Get("Retry-After"))
		}
	}
	r := call(t, h, "GET", "/readyz", "")
	want(t, r, 503, "UNAVAILABLE")
	if r.hdr.Get("Retry-After") == "" {
		t.Fatal("readyz 503 without Retry-After")
	}
	if r := call(t, h, "GET", "/healthz", ""); r.code != 200 {
		t.Fatalf("healthz %d without a leader", r.code)
	}
	r = call(t, h, "GET", "/v1/status", "")
	want(t, r, 200, "")
	if r.body["leader"] != "" {
		t.Fatalf("status = %s", r.raw)
	}
	// The leader comes back; forwarding resumes.
	fc.SetLeader(2)
	want(t, call(t, h, "POST", "/v1/leases", `{"ttl_ms":1000}`), 200, "")
}
