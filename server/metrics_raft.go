package server

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gometricsprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Raft's own figures (commit time, log store writes, replication, snapshot
// timings, ...) are reported by hashicorp/raft and raft-boltdb through
// go-metrics' process-wide global, without saying which raft instance they
// come from. They are bridged to Prometheus by one go-metrics Prometheus
// sink per process, installed by the first node and registered in every
// node's registry, named leasecluster_raft_* (go-metrics' names with "."
// turned into "_"; timings are summaries in milliseconds).
//
// One node per process (serve) is the deployment, and there the figures are
// that node's. In a process with several nodes (dev, the in-process tests)
// they are the process's: every node's /metrics shows the same, combined
// series. A node label cannot be added, since raft does not say which
// instance reports. The gauges below (contacts, snapshot age) are per node.
//
// The compat packages follow raft's choice of backend: raft v1.7 and
// raft-boltdb v2 report through go-metrics/compat, which is armon/go-metrics
// unless the binary is built with -tags hashicorpmetrics; a sink of the other
// backend would receive nothing.

var (
	raftSinkOnce sync.Once
	raftSinkVal  prometheus.Collector
)

// raftSink returns the process's go-metrics Prometheus sink, installing it
// as go-metrics' global on first use (nil if that failed).
func raftSink() prometheus.Collector {
	raftSinkOnce.Do(func() {
		opts := gometricsprom.PrometheusOpts{
			Expiration: time.Minute, // a series not reported for a minute is dropped (e.g. commit time after losing leadership)
			Name:       "leasecluster_raft_sink",
			Registerer: prometheus.NewRegistry(), // not the default registry: each node registers the sink in its own
		}
		sink, err := gometricsprom.NewPrometheusSinkFrom(opts)
		if err != nil {
			return
		}
		cfg := gometrics.DefaultConfig("leasecluster")
		cfg.EnableHostname = false       // no host name in the series' names
		cfg.EnableRuntimeMetrics = false // the Go collector has them; no goroutine of its own
		cfg.EnableServiceLabel = false   // the service name is the names' prefix
		// raft also reports each per-peer timing under a name of its own
		// ("...rpc.n2") beside the one with a peer_id label; keep the latter.
		cfg.BlockedPrefixes = legacyPeerPrefixes
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			return
		}
		raftSinkVal = sink
	})
	return raftSinkVal
}

// legacyPeerPrefixes are raft's per-peer names without labels (raft's
// NoLegacyTelemetry off): a prefix ending in "." matches only them.
var legacyPeerPrefixes = []string{
	"leasecluster.raft.replication.appendEntries.rpc.",
	"leasecluster.raft.replication.appendEntries.logs.",
	"leasecluster.raft.replication.heartbeat.",
	"leasecluster.raft.replication.installSnapshot.",
}

var (
	followerContactDesc = prometheus.NewDesc("leasecluster_raft_follower_last_contact_seconds",
		"On the leader, per other member: time since the send of the newest AppendEntries (heartbeat or replication) the member answered in this term; +Inf if none.",
		[]string{"follower"}, nil)
	snapshotAgeDesc = prometheus.NewDesc("leasecluster_raft_snapshot_age_seconds",
		"Time since this node's newest Raft snapshot was taken (or installed from the leader); absent while it has none.", nil, nil)
	snapshotIndexDesc = prometheus.NewDesc("leasecluster_raft_snapshot_index",
		"Last log index included in this node's newest Raft snapshot; absent while it has none.", nil, nil)
)

// raftCollector reports, at scrape time, the per-node raft figures that
// go-metrics does not: the leader's last contact with each follower (from
// the transport's contacts, the ones the renewal lease reads) and the age of
// the newest snapshot.
type raftCollector struct{ n *Node }

func (c raftCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- followerContactDesc
	ch <- snapshotAgeDesc
	ch <- snapshotIndexDesc
}

func (c raftCollector) Collect(ch chan<- prometheus.Metric) {
	rs := &c.n.rs
	if rs.raft == nil {
		return
	}
	now := time.Now()
	if snaps, err := rs.snaps.List(); err == nil && len(snaps) > 0 {
		if at, ok := snapshotTime(snaps[0].ID); ok { // newest first
			ch <- prometheus.MustNewConstMetric(snapshotAgeDesc, prometheus.GaugeValue, max(now.Sub(at).Seconds(), 0))
		}
		ch <- prometheus.MustNewConstMetric(snapshotIndexDesc, prometheus.GaugeValue, float64(snaps[0].Index))
	}
	term := rs.raft.CurrentTerm()
	if rs.raft.State() != raft.Leader {
		return
	}
	f := rs.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	self := raft.ServerID(c.n.cfg.Name)
	for _, s := range f.Configuration().Servers {
		if s.ID == self {
			continue
		}
		age := math.Inf(1)
		if ct, ok := rs.trans.LastContact(s.Address); ok && ct.Term == term {
			age = max(now.Sub(ct.Sent).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(followerContactDesc, prometheus.GaugeValue, age, string(s.ID))
	}
}

// snapshotTime is when raft's FileSnapshotStore took the snapshot named id
// ("term-index-unixmillis").
func snapshotTime(id string) (time.Time, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}
