package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/server"
)

// slowStore delays every Raft log write by a settable amount, like a disk
// whose fsync stalls.
type slowStore struct {
	raft.LogStore
	delay atomic.Int64 // nanoseconds
}

func (s *slowStore) wait() {
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d) // the fault itself: a stalled write
	}
}

func (s *slowStore) StoreLog(l *raft.Log) error {
	s.wait()
	return s.LogStore.StoreLog(l)
}

func (s *slowStore) StoreLogs(ls []*raft.Log) error {
	s.wait()
	return s.LogStore.StoreLogs(ls)
}

// handler serves the fault controls under /chaos/ beside the public API. It
// dispatches on the path prefix rather than through a ServeMux in front of
// h, which would clean every other path (an item key with "//" would be
// redirected) before the API saw it.
//
//	GET  /chaos/state                          -> {"bug","clock":{...},"fsync_delay_ms","disk":{...}}
//	POST /chaos/clock?offset=5s&rate=1.004&follower_rate=1.1   (any subset)
//	POST /chaos/fsync?delay=200ms
//	POST /chaos/transfer                       (on the leader; returns once raft is done)
//	POST /chaos/disk?mode=honest|lie|stall|errors  (the log disk: store.go)
func (nd *node) handler(h http.Handler, n *server.Node) http.Handler {
	if nd.clock != nil {
		nd.clock.setLeading(n.IsLeader)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chaos/state", func(w http.ResponseWriter, _ *http.Request) {
		nd.writeState(w)
	})
	mux.HandleFunc("POST /chaos/clock", nd.setClock)
	mux.HandleFunc("POST /chaos/fsync", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("delay"))
		if err != nil || d < 0 || nd.store == nil {
			http.Error(w, "want delay=<duration> >= 0", http.StatusBadRequest)
			return
		}
		nd.store.delay.Store(int64(d))
		nd.writeState(w)
	})
	mux.HandleFunc("POST /chaos/disk", func(w http.ResponseWriter, r *http.Request) {
		if nd.disk == nil {
			http.Error(w, "no log store yet", http.StatusConflict)
			return
		}
		if err := nd.disk.setMode(r.URL.Query().Get("mode")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		nd.writeState(w)
	})
	mux.HandleFunc("POST /chaos/transfer", func(w http.ResponseWriter, _ *http.Request) {
		// A follower answers 409: the harness asks the node it saw leading,
		// and a leadership change in between is not worth a retry.
		if err := n.TransferLeadership(); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		nd.writeState(w)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/chaos/") {
			mux.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (nd *node) setClock(w http.ResponseWriter, r *http.Request) {
	if nd.clock == nil {
		http.Error(w, "the node was started with its own clock", http.StatusConflict)
		return
	}
	var off *time.Duration
	if v := r.URL.Query().Get("offset"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		off = &d
	}
	rate, err := rateParam(r, "rate")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	follow, err := rateParam(r, "follower_rate")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	nd.clock.set(off, rate, follow)
	nd.writeState(w)
}

// rateParam parses an optional positive rate parameter.
func rateParam(r *http.Request, name string) (*float64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		return nil, fmt.Errorf("bad %s %q", name, v)
	}
	return &f, nil
}

func (nd *node) writeState(w http.ResponseWriter) {
	st := map[string]any{"bug": nd.bug}
	if nd.clock != nil {
		st["clock"] = nd.clock.state()
	}
	if nd.store != nil {
		st["fsync_delay_ms"] = time.Duration(nd.store.delay.Load()).Milliseconds()
	}
	if nd.disk != nil {
		st["disk"] = nd.disk.state()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}
