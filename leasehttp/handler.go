// Package leasehttp is leasecluster's HTTP/JSON API (the /v1 routes, health,
// readiness and metrics), served by every node.
//
// It is a gateway: each request is translated into a call of the client
// library, whose endpoints list the local node first and then its peers. The
// client follows LeaderHints, so a follower forwards every request, renewals
// included, to the leader, and an HTTP caller never needs to know who leads.
// Only /v1/status, /healthz, /readyz and /metrics are answered from the local
// node itself.
//
// IDs and revisions are written as decimal strings (JavaScript numbers lose
// precision above 2^53) and accepted as strings or numbers. A lease ID, in a
// path, a query or a body, is decimal digits only, from 1 to 2^63-1
// (limits.ParseLeaseID); anything else is 400. Errors are
// {"error":{"code":"NOT_FOUND","message":"..."}} with the matching status.
// Item keys are 1 to 1024 bytes of UTF-8 and may contain '/'; the key is the
// rest of the path after /v1/items/, percent-decoded, taken verbatim (no path
// cleaning, so "a//b", "a/./b" and "a/../b" are keys like any other, stored
// as sent). A body declared (Content-Length) or found to be over 1 MiB gets
// 413. Invalid UTF-8, in a key or anywhere in a body (a lone surrogate
// escape in a value too), is 400: never replaced with U+FFFD. The limits are
// package limits'.
//
// Browser requests (an Origin header, or Sec-Fetch-Site: cross-site) are
// served only from the origins listed in Config.AllowedOrigins, else 403
// PERMISSION_DENIED; programs send no Origin and are served. A panic in a
// route is answered 500 INTERNAL and logged (guard.go). Every error this
// handler answers has the JSON body; what http.Server answers before any
// handler runs (400 for a malformed request line, 431 for headers over its
// MaxHeaderBytes) stays net/http's plain text.
package leasehttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/limits"
)

// LocalNode is what the node running the handler tells about itself.
type LocalNode interface {
	// Status is this node's own status (GET /v1/status).
	Status(ctx context.Context) (*leasepb.StatusResponse, error)
	// Ready returns nil when a leader is known and this node has caught up
	// (GET /readyz).
	Ready() error
}

// DefaultRequestTimeout bounds one HTTP request's work, leader discovery and
// retries included.
const DefaultRequestTimeout = 5 * time.Second

// Config configures the handler.
type Config struct {
	// Client forwards requests; its endpoints should list the local node first.
	Client *client.Client
	// Local answers /v1/status and /readyz.
	Local LocalNode
	// Metrics serves /metrics (Prometheus text); nil means 404.
	Metrics http.Handler
	// RequestTimeout bounds each request (default DefaultRequestTimeout).
	// A request that finds no leader within it gets 503.
	RequestTimeout time.Duration
	// RetryAfter is the Retry-After sent with 503 (default 1 s; whole seconds).
	RetryAfter time.Duration
	// AllowedOrigins are the exact origins (https://ops.example.com) whose
	// browser pages may call the API; a request with any other Origin gets
	// 403 PERMISSION_DENIED (guard.go). Empty: no browser origin. Entries
	// that CheckOrigin refuses never match.
	AllowedOrigins []string
	// OnPanic logs a panic of a route, answered 500 INTERNAL (default: the
	// standard logger).
	OnPanic func(r *http.Request, v any, stack []byte)
}

type handler struct {
	cfg Config
	mux *http.ServeMux
}

// NewHandler returns the HTTP API handler: the routes behind the origin
// rule and panic recovery (guard.go).
func NewHandler(cfg Config) http.Handler {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.RetryAfter < time.Second {
		cfg.RetryAfter = time.Second
	}
	h := &handler{cfg: cfg, mux: http.NewServeMux()}
	// Methods are dispatched here rather than in the patterns so that a
	// wrong method gets the JSON error body (ServeMux's 405 is plain text).
	h.route("/v1/leases", map[string]http.HandlerFunc{"POST": h.grant, "GET": h.list})
	h.route("/v1/leases/{id}", map[string]http.HandlerFunc{"GET": h.lease, "DELETE": h.revoke})
	h.route("/v1/leases/{id}/keepalive", map[string]http.HandlerFunc{"POST": h.keepAlive})
	h.route("/v1/status", map[string]http.HandlerFunc{"GET": h.status})
	h.route("/v1/snapshot", map[string]http.HandlerFunc{"GET": h.snapshot}) // snapshot.go
	h.memberRoutes()                                                        // members.go
	h.route("/healthz", map[string]http.HandlerFunc{"GET": h.healthz})
	h.route("/readyz", map[string]http.HandlerFunc{"GET": h.readyz})
	h.route("/metrics", map[string]http.HandlerFunc{"GET": h.metrics})
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no route for "+r.URL.Path, 0)
	})
	return newGuard(h, cfg)
}

func (h *handler) route(pattern string, methods map[string]http.HandlerFunc) {
	allow := make([]string, 0, len(methods)+1)
	for m := range methods {
		allow = append(allow, m)
	}
	if methods[http.MethodGet] != nil && methods[http.MethodHead] == nil {
		allow = append(allow, http.MethodHead) // HEAD is served as GET
	}
	slices.Sort(allow)
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		f, ok := methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			f, ok = methods[http.MethodGet]
		}
		if !ok {
			methodNotAllowed(w, r, allow)
			return
		}
		f(w, r)
	})
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", r.Method+" not allowed", 0)
}

// ServeHTTP sends /v1/items/... to the item routes before the ServeMux sees
// it, because ServeMux cleans paths (redirecting "a//b") and keys are taken
// verbatim. Whoever wraps the handler must not clean paths either (no
// ServeMux in front). A body declared over the limit is refused first.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := tooBig(r); err != nil {
		h.fail(w, err)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/items/"); ok {
		key, err := url.PathUnescape(rest)
		if err != nil {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad key escaping", 0)
			return
		}
		switch r.Method {
		case http.MethodPut:
			h.attach(w, r, key)
		case http.MethodGet, http.MethodHead:
			h.get(w, r, key)
		case http.MethodDelete:
			h.detach(w, r, key)
		default:
			methodNotAllowed(w, r, []string{"DELETE", "GET", "HEAD", "PUT"})
		}
		return
	}
	// ServeMux would answer a path that is not canonical ("/v1/.", "/a/../b")
	// with a plain-text redirect; an API client gets the JSON 404 instead.
	if p := r.URL.Path; p != cleanPath(p) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no route for "+p, 0)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// cleanPath is the canonical form ServeMux routes: path.Clean, keeping a
// trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

func (h *handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
}

func (h *handler) grant(w http.ResponseWriter, r *http.Request) {
	var req grantRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, err)
		return
	}
	if req.TTLMs == nil {
		h.fail(w, fmt.Errorf("%w: ttl_ms is required", ErrBadRequest))
		return
	}
	if err := limits.CheckTTLMs(int64(*req.TTLMs)); err != nil {
		h.fail(w, fmt.Errorf("%w: ttl_ms: %w", ErrBadRequest, err))
		return
	}
	var opts []client.GrantOption
	if req.ID != 0 {
		opts = append(opts, client.WithID(int64(req.ID)))
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	l, err := h.cfg.Client.Grant(ctx, time.Duration(*req.TTLMs)*time.Millisecond, opts...)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, leaseResponse{ID: jsonInt64(l.ID), TTLMs: l.TTL.Milliseconds()})
}

func (h *handler) keepAlive(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	ttl, err := h.cfg.Client.RenewOnce(ctx, id) // its own stream: it carries the caller (lease ownership)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, leaseResponse{ID: jsonInt64(id), TTLMs: ttl.Milliseconds()})
}

func (h *handler) lease(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	info, err := h.cfg.Client.TimeToLive(ctx, id, true)
	if err != nil {
		h.fail(w, err)
		return
	}
	keys := info.Keys
	if keys == nil {
		keys = []string{}
	}
	writeJSON(w, leaseDetail{leaseInfo: toLeaseInfo(info), Items: keys})
}

func toLeaseInfo(l client.LeaseInfo) leaseInfo {
	return leaseInfo{ID: jsonInt64(l.ID), GrantedTTLMs: l.GrantedTTL.Milliseconds(), RemainingMs: l.Remaining.Milliseconds(), Owner: l.Owner}
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	if err := h.cfg.Client.Revoke(ctx, id); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	ls, err := h.cfg.Client.Leases(ctx)
	if err != nil {
		h.fail(w, err)
		return
	}
	out := leasesResponse{Leases: make([]leaseInfo, 0, len(ls))}
	for _, l := range ls {
		out.Leases = append(out.Leases, toLeaseInfo(l))
	}
	writeJSON(w, out)
}

func checkKey(key string) error {
	if err := limits.CheckKey(key); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

func (h *handler) attach(w http.ResponseWriter, r *http.Request, key string) {
	if err := checkKey(key); err != nil {
		h.fail(w, err)
		return
	}
	var req attachRequest
	if err := decode(w, r, &req); err != nil {
		h.fail(w, err)
		return
	}
	if req.LeaseID == nil {
		h.fail(w, fmt.Errorf("%w: lease_id is required", ErrBadRequest))
		return
	}
	if err := limits.CheckValue(string(req.Value)); err != nil {
		h.fail(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	it, err := h.cfg.Client.Attach(ctx, int64(*req.LeaseID), key, string(req.Value))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, toItem(it))
}

func toItem(it client.Item) itemResponse {
	return itemResponse{Key: it.Key, LeaseID: jsonInt64(it.LeaseID), Value: it.Value, Revision: jsonUint64(it.Revision)}
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, key string) {
	if err := checkKey(key); err != nil {
		h.fail(w, err)
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	it, err := h.cfg.Client.Get(ctx, key)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, toItem(it))
}

func (h *handler) detach(w http.ResponseWriter, r *http.Request, key string) {
	if err := checkKey(key); err != nil {
		h.fail(w, err)
		return
	}
	q := r.URL.Query()
	if !q.Has("lease_id") {
		h.fail(w, fmt.Errorf("%w: lease_id query parameter is required", ErrBadRequest))
		return
	}
	id, err := parseID(q.Get("lease_id"))
	if err != nil {
		h.fail(w, fmt.Errorf("lease_id: %w", err))
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	if err := h.cfg.Client.Detach(ctx, id, key); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.cfg.Local.Status(ctx)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, statusResponse{Name: st.GetName(), Role: st.GetRole(), Leader: st.GetLeader(), Term: st.GetTerm(), AppliedIndex: st.GetAppliedIndex(),
		RaftLog: st.GetRaftLog()})
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (h *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := h.cfg.Local.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "not ready: "+err.Error(), h.cfg.RetryAfter)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "metrics are not enabled", 0)
		return
	}
	h.cfg.Metrics.ServeHTTP(w, r)
}

// fail is the one place where errors become HTTP statuses and error codes.
func (h *handler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBodyTooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", err.Error(), 0)
	case errors.Is(err, ErrBadRequest), errors.Is(err, client.ErrInvalidArgument):
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error(), 0)
	case errors.Is(err, client.ErrLeaseNotFound), errors.Is(err, client.ErrItemNotFound):
		writeError(w, http.StatusNotFound, "NOT_FOUND", err.Error(), 0)
	case errors.Is(err, client.ErrLeaseExists):
		writeError(w, http.StatusConflict, "ALREADY_EXISTS", err.Error(), 0)
	case errors.Is(err, client.ErrItemHeld):
		writeError(w, http.StatusConflict, "FAILED_PRECONDITION", err.Error(), 0)
	case errors.Is(err, client.ErrPermissionDenied):
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", err.Error(), 0)
	case errors.Is(err, client.ErrUnsupported):
		writeError(w, http.StatusNotImplemented, "UNIMPLEMENTED", err.Error(), 0)
	case errors.Is(err, client.ErrQuotaExceeded):
		writeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", err.Error(), 0)
	case errors.Is(err, client.ErrNoLeader), errors.Is(err, client.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error(), h.cfg.RetryAfter)
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "DEADLINE_EXCEEDED", err.Error(), 0)
	default:
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error(), 0)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, name, msg string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: name, Message: msg}})
}
