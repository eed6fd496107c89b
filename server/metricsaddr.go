package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsServer is the plain-HTTP listener of Config.MetricsAddr (serve's
// --metrics-addr, like etcd's --listen-metrics-urls): /healthz, /readyz and
// /metrics only, without TLS. With --client-cert-auth the HTTP API's
// listener requires a client certificate at the handshake, which the
// kubelet's probes and a Prometheus scrape do not present; this listener is
// for them. It serves nothing that acts on or reads leases, so it needs no
// certificate; bind it where only the probes and the scraper reach it.
type metricsServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// metricsRetryAfter is the Retry-After of a 503 from /readyz, as the HTTP
// API's.
const metricsRetryAfter = time.Second

// startMetricsServer starts the listener of n.cfg.MetricsAddr; nil if it is
// empty (off).
func startMetricsServer(n *Node) (*metricsServer, error) {
	if n.cfg.MetricsAddr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if err != nil {
		return nil, err
	}
	metricsH := promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !getOrHead(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !getOrHead(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := n.info.ready(); err != nil {
			w.Header().Set("Retry-After", strconv.Itoa(int(metricsRetryAfter/time.Second)))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if getOrHead(w, r) {
			metricsH.ServeHTTP(w, r)
		}
	})
	s := &metricsServer{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
			WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout},
		lis:  lis,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics server stopped", "error", err)
		}
	}()
	n.log.Info("serving probes and metrics in plain HTTP", "metrics_addr", lis.Addr().String())
	return s, nil
}

// getOrHead answers 405 to anything but GET and HEAD.
func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// MetricsAddr is the address of the plain metrics listener, or "" when it
// is off.
func (n *Node) MetricsAddr() string {
	if n.metricsSrv == nil {
		return ""
	}
	return n.metricsSrv.lis.Addr().String()
}

// stop closes the listener; scrapes and probes are short, so a graceful stop
// waits for them (until ctx ends). A nil one (off) is fine.
func (s *metricsServer) stop(ctx context.Context, graceful bool) {
	if s == nil {
		return
	}
	if graceful {
		s.srv.Shutdown(ctx)
	} else {
		s.srv.Close()
	}
	<-s.done
}
