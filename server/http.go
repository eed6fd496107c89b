package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasehttp"
	"github.com/leasecluster/leasecluster/leasepb"
)

// Timeouts of the API's http.Server. No route streams (no long polls, no
// watches) and profiles have their own listener, so every request is short.
const (
	// httpReadHeaderTimeout bounds reading a request's headers (slowloris).
	httpReadHeaderTimeout = 10 * time.Second
	// httpReadTimeout bounds reading a whole request, headers and body.
	// Bodies are at most limits.MaxBodyBytes (1 MiB): 30 s allows a client
	// sending at 35 KB/s.
	httpReadTimeout = 30 * time.Second
	// httpWriteTimeout bounds a request from the end of its headers to the
	// end of its response. The work is bounded by the request timeout
	// (leasehttp.DefaultRequestTimeout, 5 s: leader discovery and retries);
	// the rest is for writing the largest response, GET /v1/leases of a
	// million leases (tens of MB), to a slow reader.
	httpWriteTimeout = 60 * time.Second
	// httpIdleTimeout closes keep-alive connections idle this long: longer
	// than Go's http.Client keeps idle connections (90 s), so that a client
	// usually closes first and does not reuse a connection being closed.
	httpIdleTimeout = 120 * time.Second
)

// httpServer serves the HTTP/JSON API. It is a gateway onto the gRPC API
// through the client library, pointed at this node: a follower's HTTP
// requests are forwarded to the leader by following its LeaderHint.
type httpServer struct {
	srv    *http.Server
	lis    net.Listener
	client *client.Client
	done   chan struct{}
}

// localNode gives leasehttp this node's own status and readiness.
type localNode struct{ n *Node }

func (l localNode) Status(context.Context) (*leasepb.StatusResponse, error) {
	s := l.n.info.status(false) // HTTP does not show the state hash: skip computing it
	return &leasepb.StatusResponse{Name: s.Name, Role: s.Role, Leader: s.Leader, LeaderAddress: s.LeaderAddr,
		Term: s.Term, AppliedIndex: s.AppliedIndex, CommitIndex: s.CommitIndex, LastIndex: s.LastIndex, RaftLog: s.RaftLog}, nil
}

func (l localNode) Ready() error { return l.n.info.ready() }

func startHTTP(n *Node) (*httpServer, error) {
	lis, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return nil, err
	}
	// The gateway reaches the gRPC API as a member would (its own peer
	// certificate, when TLS is on), and says for whom it calls.
	var opts []client.Option
	if n.tls != nil {
		opts = append(opts, client.WithTLS(n.tls.PeerTLS()))
	}
	c, err := client.New(context.Background(), []string{n.cfg.AdvertiseAddr}, opts...)
	if err != nil {
		lis.Close()
		return nil, err
	}
	h := leasehttp.NewHandler(leasehttp.Config{
		Client:         c,
		Local:          localNode{n},
		Metrics:        promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{}),
		AllowedOrigins: n.cfg.AllowedOrigins,
		OnPanic: func(r *http.Request, v any, stack []byte) {
			n.log.Error("http handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(stack))
		},
	})
	if n.cfg.Faults != nil && n.cfg.Faults.HTTP != nil {
		h = n.cfg.Faults.HTTP(h, n)
	}
	s := &httpServer{
		srv: &http.Server{Handler: n.httpCaller(h), ReadHeaderTimeout: httpReadHeaderTimeout,
			ReadTimeout: httpReadTimeout, WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout},
		lis:    lis,
		client: c,
		done:   make(chan struct{}),
	}
	serve := func() error { return s.srv.Serve(lis) }
	if n.tls != nil {
		s.srv.TLSConfig = n.tls.ServerTLS()
		serve = func() error { return s.srv.ServeTLS(lis, "", "") }
	}
	go func() {
		defer close(s.done)
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "error", err)
		}
	}()
	return s, nil
}

// httpCaller passes the HTTP caller's identity (its verified certificate's
// CN) on to the gRPC calls the gateway makes for it. Over HTTP nobody may
// claim another identity: only the certificate counts.
func (n *Node) httpCaller(h http.Handler) http.Handler {
	if n.tls == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c caller
		if r.TLS != nil {
			if _, cn, err := n.tls.Classify(r.TLS.PeerCertificates); err == nil {
				c.identity = cn
			}
		}
		h.ServeHTTP(w, r.WithContext(onBehalf(r.Context(), c)))
	})
}

func (s *httpServer) addr() string { return s.lis.Addr().String() }

func (s *httpServer) stop(ctx context.Context, graceful bool) {
	if graceful {
		s.srv.Shutdown(ctx)
	} else {
		s.srv.Close()
	}
	<-s.done
	s.client.Close()
}

// DefaultDebugAddr is where profiles are served when Config.Pprof is on and
// Config.DebugAddr is empty (the default of serve's --debug-addr): loopback,
// on the port net/http/pprof's documentation uses, clear of the gRPC
// (7001-7003) and HTTP (8001-8003) ports of a local cluster.
const DefaultDebugAddr = "127.0.0.1:6060"

// Timeouts of the debug listener. A CPU profile or trace runs for its
// ?seconds= (30 s by default) before it is written; net/http/pprof (Go 1.23
// and later) extends the request's write deadline by that duration, so
// debugWriteTimeout is the margin after it and does not cap it.
const (
	debugReadTimeout  = 30 * time.Second
	debugWriteTimeout = 60 * time.Second
)

// debugServer serves net/http/pprof on its own listener (plain HTTP), never
// on the API's address, where anyone allowed to use the API could read the
// command line and heap and load the node with profiles.
type debugServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// startDebug starts the debug listener. Profiles are a diagnostic: a node
// whose debug address cannot be bound (taken by another node of the same
// host or process) logs why and runs without them (nil).
func startDebug(n *Node) *debugServer {
	addr := n.cfg.DebugAddr
	if addr == "" {
		addr = DefaultDebugAddr
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		n.log.Error("pprof is not served: cannot listen on the debug address; the node runs without it", "debug_addr", addr, "error", err)
		return nil
	}
	if ta, ok := lis.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		n.log.Warn("pprof is served beyond loopback, in plain HTTP and without authentication: whoever reaches it can read the command line and memory profiles and run CPU profiles and traces",
			"debug_addr", lis.Addr().String())
	}
	// No item keys here: a ServeMux's path cleaning is harmless. The index
	// also serves the named profiles (heap, goroutine, ...).
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d := &debugServer{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: debugReadTimeout,
			WriteTimeout: debugWriteTimeout, IdleTimeout: httpIdleTimeout},
		lis:  lis,
		done: make(chan struct{}),
	}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("debug server stopped", "error", err)
		}
	}()
	n.log.Info("serving pprof", "debug_addr", lis.Addr().String())
	return d
}

// DebugAddr is the address profiles are served on, or "" when they are not
// (Pprof off, or the debug address could not be bound).
func (n *Node) DebugAddr() string {
	if n.debug == nil {
		return ""
	}
	return n.debug.lis.Addr().String()
}

// stop closes the debug server at once, even on a graceful stop: a profile
// in progress is of no use to a stopping node and must not hold it up. A nil
// one (not started) is fine.
func (d *debugServer) stop() {
	if d == nil {
		return
	}
	d.srv.Close()
	<-d.done
}
