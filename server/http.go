package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasehttp"
	"github.com/leasecluster/leasecluster/leasepb"
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
		Term: s.Term, AppliedIndex: s.AppliedIndex, CommitIndex: s.CommitIndex, LastIndex: s.LastIndex}, nil
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
		Client:  c,
		Local:   localNode{n},
		Metrics: promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{}),
	})
	if n.cfg.Faults != nil && n.cfg.Faults.HTTP != nil {
		h = n.cfg.Faults.HTTP(h, n)
	}
	if n.cfg.Pprof {
		h = withPprof(h)
	}
	s := &httpServer{
		srv:    &http.Server{Handler: n.httpCaller(h), ReadHeaderTimeout: 10 * time.Second},
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

// withPprof serves net/http/pprof under /debug/pprof/ beside api. It
// dispatches on the path prefix: a ServeMux in front of api would clean
// every other path, redirecting PUT /v1/items/lock//main to lock/main, a
// different key.
func withPprof(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/debug/pprof/")
		if !ok {
			if r.URL.Path == "/debug/pprof" {
				http.Redirect(w, r, "/debug/pprof/", http.StatusMovedPermanently)
				return
			}
			api.ServeHTTP(w, r)
			return
		}
		switch name {
		case "cmdline":
			pprof.Cmdline(w, r)
		case "profile":
			pprof.Profile(w, r)
		case "symbol":
			pprof.Symbol(w, r)
		case "trace":
			pprof.Trace(w, r)
		default:
			pprof.Index(w, r) // the index, and the named profiles (heap, goroutine, ...)
		}
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
