package leasehttp

import (
	"fmt"
	"log"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
)

// Browser requests. A web page can make a browser send requests to any
// address, the API's included, with the user's network position: a form
// posted cross-site with a text/plain body is a "simple" request that needs
// no CORS preflight, so without a check any page could grant, renew and
// revoke leases on a node reachable from the browser (127.0.0.1 too).
// Browsers send Origin on every request but same-origin GETs and HEADs, and
// programs (the CLI, curl, the client library) send none; so:
//
//   - a request with an Origin header is served only if that origin is
//     listed, exactly, in Config.AllowedOrigins (--allowed-origins); any
//     other gets 403 PERMISSION_DENIED, whatever its method or route. The
//     exact list also stops a DNS-rebinding page (its Origin is its own
//     name, not a listed one), which a same-origin check would let through.
//   - a request without Origin but with Sec-Fetch-Site: cross-site (a link,
//     an <img> or a script tag on another site) is refused likewise: no
//     program sends that header, and no listed page needs it.
//   - Sec-Fetch-Site same-site, same-origin or none without Origin (a GET
//     typed into the address bar, or from a page on the API's own origin,
//     which the API never serves) is let through.
//
// A listed origin gets Access-Control-Allow-Origin (and Vary: Origin) on
// every response and an answer to its CORS preflights (OPTIONS with
// Access-Control-Request-Method): 204 with the methods and Content-Type.
// Credentials are not allowed (no Access-Control-Allow-Credentials).

// corsMethods are the methods a listed origin may use.
const corsMethods = "GET, HEAD, POST, PUT, DELETE"

// CheckOrigin reports whether s can be listed in AllowedOrigins: an exact
// origin as browsers send it, scheme://host[:port] with scheme http or
// https, lowercase, with no path, query, user or default port. Wildcards
// and "null" (sandboxed and file:// pages) are refused.
func CheckOrigin(s string) error {
	bad := func(why string) error {
		return fmt.Errorf("leasehttp: allowed origin %q: %s (write it as a browser sends it, e.g. https://ops.example.com or http://127.0.0.1:3000)", s, why)
	}
	switch {
	case s == "*" || strings.Contains(s, "*"):
		return bad("wildcards are not supported: list every origin")
	case s == "null":
		return bad(`"null" is the origin of sandboxed and file:// pages: any of them would be allowed`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad(err.Error())
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("the scheme must be http or https")
	case u.Host == "" || u.User != nil || u.Opaque != "":
		return bad("not scheme://host[:port]")
	case u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("an origin has no path, query or fragment (no trailing slash either)")
	case s != strings.ToLower(s):
		return bad("browsers send origins in lowercase")
	case u.Scheme == "https" && u.Port() == "443", u.Scheme == "http" && u.Port() == "80":
		return bad("browsers leave the default port out")
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return bad("browsers send international host names in punycode (xn--...)")
		}
	}
	return nil
}

// guard wraps the routes: the origin rule above, and recovery from panics
// (500 INTERNAL with a JSON body, logged through onPanic).
type guard struct {
	next    http.Handler
	allowed map[string]bool
	onPanic func(r *http.Request, v any, stack []byte)
}

func newGuard(next http.Handler, cfg Config) *guard {
	g := &guard{next: next, allowed: map[string]bool{}, onPanic: cfg.OnPanic}
	for _, o := range cfg.AllowedOrigins {
		if CheckOrigin(o) == nil { // "*", "null" and the like never match
			g.allowed[o] = true
		}
	}
	if g.onPanic == nil {
		g.onPanic = func(r *http.Request, v any, stack []byte) {
			log.Printf("leasehttp: panic serving %s %s: %v\n%s", r.Method, r.URL.Path, v, stack)
		}
	}
	return g
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &trackingWriter{ResponseWriter: w}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared as net/http does
			panic(v)
		}
		g.onPanic(r, v, debug.Stack())
		if tw.wrote {
			// The status is gone: cut the connection, so that the client
			// sees a failed response rather than a truncated success.
			panic(http.ErrAbortHandler)
		}
		writeError(tw, http.StatusInternalServerError, "INTERNAL", "internal error: the request failed on the server (logged)", 0)
	}()
	if !g.admit(tw, r) {
		return
	}
	g.next.ServeHTTP(tw, r)
}

// admit applies the origin rule; false means it has answered the request.
func (g *guard) admit(w http.ResponseWriter, r *http.Request) bool {
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			writeError(w, http.StatusForbidden, "PERMISSION_DENIED",
				"cross-site browser request refused (Sec-Fetch-Site: cross-site, no Origin): browser pages may call the API only from an origin listed in --allowed-origins", 0)
			return false
		}
		return true
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if len(origins) != 1 || !g.allowed[origins[0]] {
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED",
			fmt.Sprintf("origin %q is not allowed: browser pages may call the API only from an origin listed in --allowed-origins", strings.Join(origins, ", ")), 0)
		return false
	}
	h.Set("Access-Control-Allow-Origin", origins[0])
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	h.Set("Access-Control-Expose-Headers", "Retry-After")
	return true
}

// trackingWriter notes whether the response has started.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackingWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Flush and Unwrap keep http.ResponseController working through the wrapper.
func (w *trackingWriter) Flush() {
	w.wrote = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
