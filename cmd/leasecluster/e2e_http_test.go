package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var httpc = &http.Client{Timeout: 5 * time.Second}

// api calls one node's HTTP API and checks the contract's response shapes.
type api struct {
	t    *testing.T
	base string // http://host:port
}

func (a api) do(method, path, body string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, raw
}

// ok requires 200 with a JSON object and returns it.
func (a api) ok(method, path, body string) map[string]any {
	a.t.Helper()
	code, raw := a.do(method, path, body)
	if code != http.StatusOK {
		a.t.Fatalf("%s %s: status %d, want 200: %s", method, path, code, raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		a.t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, raw, err)
	}
	return m
}

// fail requires the given status and error code in {"error":{"code","message"}}.
func (a api) fail(method, path, body string, wantStatus int, wantCode string) {
	a.t.Helper()
	code, raw := a.do(method, path, body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || code != wantStatus || e.Error.Code != wantCode || e.Error.Message == "" {
		short := string(raw)
		if len(short) > 200 {
			short = short[:200] + "..."
		}
		a.t.Errorf("%s %s: got %d %s, want %d with error code %s", method, path, code, short, wantStatus, wantCode)
	}
}

// leaseIDs lists the IDs of GET /v1/leases.
func (a api) leaseIDs() []string {
	a.t.Helper()
	m := a.ok("GET", "/v1/leases", "")
	var ids []string
	for _, l := range m["leases"].([]any) {
		ids = append(ids, str(a.t, l.(map[string]any), "id"))
	}
	return ids
}

// str returns m[k], which must be a JSON string: the contract writes IDs and
// revisions as decimal strings so that JavaScript does not round them.
func str(t *testing.T, m map[string]any, k string) string {
	t.Helper()
	s, ok := m[k].(string)
	if !ok {
		t.Fatalf("field %q of %v is %T, want a string", k, m, m[k])
	}
	return s
}

func num(t *testing.T, m map[string]any, k string) float64 {
	t.Helper()
	f, ok := m[k].(float64)
	if !ok {
		t.Fatalf("field %q of %v is %T, want a number", k, m, m[k])
	}
	return f
}

// TestE2EHTTPAPI walks every route of ARCHITECTURE.md's HTTP table through a
// follower, which must forward to the leader, including the error statuses
// and codes, and checks that refused requests changed nothing.
func TestE2EHTTPAPI(t *testing.T) {
	c := sharedCluster(t)
	leader, err := waitLeader(c, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Follower(leader)
	a := api{t, "http://" + f.HTTPAddr}

	st := a.ok("GET", "/v1/status", "")
	if str(t, st, "name") != f.Name || str(t, st, "role") != "follower" || str(t, st, "leader") != leader.Name {
		t.Fatalf("follower status %v: want name %s, role follower, leader %s", st, f.Name, leader.Name)
	}
	// applied_index may still be 0 on a follower that has not yet heard of
	// a commit, but it must be a plain JSON number, as term is.
	if num(t, st, "term") < 1 || num(t, st, "applied_index") < 0 {
		t.Errorf("status %v: want term >= 1 and applied_index a number", st)
	}

	// Grant: leader-chosen ID, then client-chosen IDs above 2^53 as a string
	// and as a number, which must come back exactly (no float64 rounding).
	g := a.ok("POST", "/v1/leases", `{"ttl_ms":30000}`)
	id1 := str(t, g, "id")
	if n, err := strconv.ParseInt(id1, 10, 64); err != nil || n <= 0 || num(t, g, "ttl_ms") != 30000 {
		t.Fatalf("grant: %v, want a positive decimal id and ttl_ms 30000", g)
	}
	const id2, id3 = "9007199254740993", "9007199254740995"
	if g := a.ok("POST", "/v1/leases", `{"ttl_ms":30000,"id":"`+id2+`"}`); str(t, g, "id") != id2 {
		t.Errorf("grant with id as string: got %v, want id %s", g, id2)
	}
	if g := a.ok("POST", "/v1/leases", `{"ttl_ms":30000,"id":`+id3+`}`); str(t, g, "id") != id3 {
		t.Errorf("grant with id as number: got %v, want id %s", g, id3)
	}
	// Rule 4: a TTL under the minimum (1.5 x 500ms) is raised, and the reply says so.
	short := a.ok("POST", "/v1/leases", `{"ttl_ms":100}`)
	if num(t, short, "ttl_ms") != 750 {
		t.Errorf("grant ttl_ms 100: got %v, want ttl_ms raised to 750", short)
	}
	a.ok("DELETE", "/v1/leases/"+str(t, short, "id"), "")

	if k := a.ok("POST", "/v1/leases/"+id1+"/keepalive", ""); str(t, k, "id") != id1 || num(t, k, "ttl_ms") != 30000 {
		t.Errorf("keepalive: got %v, want id %s ttl_ms 30000", k, id1)
	}

	// Items: keys with '/' (and an empty segment, taken verbatim); lease_id
	// as a string and as a number.
	const key1, key2 = "app/db/primary", "cfg//x"
	it := a.ok("PUT", "/v1/items/"+key1, `{"lease_id":"`+id1+`","value":"v1"}`)
	rev1 := str(t, it, "revision")
	if str(t, it, "key") != key1 || str(t, it, "lease_id") != id1 || str(t, it, "value") != "v1" {
		t.Fatalf("attach: got %v", it)
	}
	if r, err := strconv.ParseUint(rev1, 10, 64); err != nil || r == 0 {
		t.Fatalf("attach: revision %q is not a positive decimal", rev1)
	}
	if it := a.ok("PUT", "/v1/items/"+key2, `{"lease_id":`+id1+`}`); str(t, it, "key") != key2 || str(t, it, "value") != "" {
		t.Errorf("attach %q: got %v", key2, it)
	}
	// Re-attaching to the holder updates the value and keeps the revision.
	if it := a.ok("PUT", "/v1/items/"+key1, `{"lease_id":"`+id1+`","value":"v2"}`); str(t, it, "revision") != rev1 || str(t, it, "value") != "v2" {
		t.Errorf("re-attach: got %v, want revision %s and value v2", it, rev1)
	}
	if it := a.ok("GET", "/v1/items/"+key1, ""); str(t, it, "lease_id") != id1 || str(t, it, "value") != "v2" || str(t, it, "revision") != rev1 {
		t.Errorf("get item: got %v", it)
	}
	l := a.ok("GET", "/v1/leases/"+id1, "")
	var items []string
	for _, k := range l["items"].([]any) {
		items = append(items, k.(string))
	}
	slices.Sort(items)
	if str(t, l, "id") != id1 || num(t, l, "granted_ttl_ms") != 30000 || num(t, l, "remaining_ms") <= 0 ||
		num(t, l, "remaining_ms") > 30000 || !slices.Equal(items, []string{key1, key2}) {
		t.Errorf("get lease: got %v, want granted 30000, 0 < remaining <= 30000, items [%s %s]", l, key1, key2)
	}
	ids := a.leaseIDs()
	for _, id := range []string{id1, id2, id3} {
		if !slices.Contains(ids, id) {
			t.Errorf("GET /v1/leases %v lacks %s", ids, id)
		}
	}

	// Refusals, each with its status and code, none of which may change anything.
	a.fail("POST", "/v1/leases", `{"ttl_ms":0}`, 400, "INVALID_ARGUMENT")
	a.fail("POST", "/v1/leases", `{"ttl_ms":-5}`, 400, "INVALID_ARGUMENT")
	a.fail("POST", "/v1/leases", `{"ttl_ms":1.5}`, 400, "INVALID_ARGUMENT")
	a.fail("POST", "/v1/leases", `{}`, 400, "INVALID_ARGUMENT")
	a.fail("POST", "/v1/leases", `{"ttl_ms":`, 400, "INVALID_ARGUMENT")
	a.fail("POST", "/v1/leases", `{"ttl_ms":1000,"colour":"red"}`, 400, "INVALID_ARGUMENT")
	a.fail("POST", "/v1/leases", `{"ttl_ms":1000,"id":"`+id2+`"}`, 409, "ALREADY_EXISTS")
	a.fail("POST", "/v1/leases/424242/keepalive", "", 404, "NOT_FOUND")
	a.fail("GET", "/v1/leases/424242", "", 404, "NOT_FOUND")
	a.fail("DELETE", "/v1/leases/424242", "", 404, "NOT_FOUND")
	a.fail("GET", "/v1/items/no/such/key", "", 404, "NOT_FOUND")
	a.fail("DELETE", "/v1/items/no/such/key?lease_id="+id1, "", 404, "NOT_FOUND")
	a.fail("PUT", "/v1/items/other", `{"lease_id":"424242"}`, 404, "NOT_FOUND")
	a.fail("PUT", "/v1/items/"+key1, `{"lease_id":"`+id2+`","value":"thief"}`, 409, "FAILED_PRECONDITION")
	a.fail("DELETE", "/v1/items/"+key1+"?lease_id="+id2, "", 409, "FAILED_PRECONDITION")
	// Over 1 MiB: 413 even though the body is otherwise well-formed (a
	// value this large would be a 400 if the body were read to the end).
	big := `{"lease_id":"` + id2 + `","value":"` + strings.Repeat("x", 1<<20) + `"}`
	a.fail("PUT", "/v1/items/"+key1, big, 413, "PAYLOAD_TOO_LARGE")
	a.fail("POST", "/v1/leases", `{"ttl_ms":1000,"id":"`+strings.Repeat("1", 1<<20)+`"}`, 413, "PAYLOAD_TOO_LARGE")

	if after := a.leaseIDs(); len(after) != len(ids) {
		t.Errorf("refused requests changed the lease count: %d before, %d after (%v)", len(ids), len(after), after)
	}
	if it := a.ok("GET", "/v1/items/"+key1, ""); str(t, it, "lease_id") != id1 || str(t, it, "value") != "v2" || str(t, it, "revision") != rev1 {
		t.Errorf("refused requests changed item %s: %v", key1, it)
	}
	a.fail("GET", "/v1/items/other", "", 404, "NOT_FOUND")

	// Detach one item; revoking the lease removes the other.
	if m := a.ok("DELETE", "/v1/items/"+key2+"?lease_id="+id1, ""); len(m) != 0 {
		t.Errorf("detach: got %v, want {}", m)
	}
	a.fail("GET", "/v1/items/"+key2, "", 404, "NOT_FOUND")
	if m := a.ok("DELETE", "/v1/leases/"+id1, ""); len(m) != 0 {
		t.Errorf("revoke: got %v, want {}", m)
	}
	a.fail("GET", "/v1/items/"+key1, "", 404, "NOT_FOUND")
	a.fail("GET", "/v1/leases/"+id1, "", 404, "NOT_FOUND")
	if slices.Contains(a.leaseIDs(), id1) {
		t.Errorf("revoked lease %s still listed", id1)
	}
	a.ok("DELETE", "/v1/leases/"+id2, "")
	a.ok("DELETE", "/v1/leases/"+id3, "")

	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := a.do("GET", p, ""); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	code, metrics := a.do("GET", "/metrics", "")
	if code != 200 || !strings.Contains(string(metrics), "# TYPE leasecluster_") || !strings.Contains(string(metrics), "leasecluster_applied_index ") {
		t.Errorf("GET /metrics: %d, want Prometheus text with leasecluster_ metrics:\n%.500s", code, metrics)
	}
}
