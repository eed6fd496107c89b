package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's Prometheus metrics, on a registry of its own so that
// several nodes can live in one process (tests).
type metrics struct {
	registry    *prometheus.Registry
	leader      prometheus.Gauge
	grants      prometheus.Counter
	renewals    prometheus.Counter
	expired     prometheus.Counter
	checkpoints prometheus.Counter
	// Renewal batches confirmed by raft's recent quorum contacts, and by a
	// VerifyLeader round of their own.
	confirmedByLease, confirmedByRound prometheus.Counter
	// Group commit: log entries proposed by the committer, and the commands
	// that shared one (in batches of two or more).
	groupEntries, groupedCommands prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		registry:    prometheus.NewRegistry(),
		leader:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "leasecluster_is_leader", Help: "1 while this node leads and serves as leader."}),
		grants:      prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_grants_total", Help: "Leases granted by this node as leader."}),
		renewals:    prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_renewals_total", Help: "Renewals acknowledged by this node as leader."}),
		expired:     prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_expired_revokes_total", Help: "Leases revoked on expiry by this node as leader."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_checkpoints_total", Help: "Lease checkpoints replicated by this node as leader."}),
		groupEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_group_commit_entries_total",
			Help: "Log entries proposed for grants and client revokes (one command, or a batch of them)."}),
		groupedCommands: prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_group_commit_batched_total",
			Help: "Grants and client revokes that shared a log entry with others."}),
	}
	confirmations := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leasecluster_renewal_confirmations_total",
		Help: "Renewal batches whose leadership confirmation came from raft's recent quorum contacts (by=lease) or from a quorum round (by=round)."}, []string{"by"})
	m.confirmedByLease, m.confirmedByRound = confirmations.WithLabelValues("lease"), confirmations.WithLabelValues("round")
	m.registry.MustRegister(m.leader, m.grants, m.renewals, m.expired, m.checkpoints, confirmations, m.groupEntries, m.groupedCommands,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leasecluster_applied_index", Help: "Index of the last applied Raft entry."},
			func() float64 { return float64(n.rs.raft.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leasecluster_term", Help: "Current Raft term."},
			func() float64 { return float64(n.rs.raft.CurrentTerm()) }),
	)
	return m
}
