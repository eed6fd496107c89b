package server

import (
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/lessor"
)

// metrics are the node's Prometheus metrics, on a registry of its own so that
// several nodes can live in one process (tests, dev). Every series is named
// in README.md ("Metrics"). Children of labelled series are resolved here,
// once, so that the hot paths (renewals, proposals) only add to counters
// and observe histograms: no lookups, no allocations.
type metrics struct {
	registry      *prometheus.Registry
	leader        prometheus.Gauge
	grants        prometheus.Counter
	clientRevokes prometheus.Counter
	expired       prometheus.Counter
	checkpoints   prometheus.Counter
	// Renewals by outcome: acknowledged (ok, not_found, permission_denied,
	// error) and renewed in the lessor but never acknowledged because
	// leadership could not be confirmed (unconfirmed).
	renewOK, renewNotFound, renewDenied, renewError, renewUnconfirmed prometheus.Counter
	// renewLatency: from the receipt of a renewal to its acknowledgement.
	renewLatency prometheus.Histogram
	// expiryLag: see expiredRevokes.
	expiryLag prometheus.Histogram
	// Renewal batches confirmed by raft's recent quorum contacts, and by a
	// VerifyLeader round of their own.
	confirmedByLease, confirmedByRound prometheus.Counter
	// Group commit: log entries proposed by the committer, and the commands
	// that shared one (in batches of two or more).
	groupEntries, groupedCommands prometheus.Counter
	// grpc counts the gRPC server's RPCs by method and code (metrics_grpc.go).
	grpc *grpcprom.ServerMetrics
}

// Histogram buckets, in seconds.
var (
	// Renewals are acknowledged within a few ms in steady state; a quorum
	// round on a loaded machine takes tens of ms; seconds mean trouble.
	renewLatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	// Expiry lag: a few ms when idle; 100,000 leases expiring at once at the
	// default --revoke-rate take about a second; minutes mean no leader.
	expiryLagBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}
)

func newMetrics(n *Node) *metrics {
	m := &metrics{
		registry:      prometheus.NewRegistry(),
		leader:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "leasecluster_is_leader", Help: "1 while this node leads and serves as leader."}),
		grants:        prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_grants_total", Help: "Leases granted by this node as leader."}),
		clientRevokes: prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_client_revokes_total", Help: "Leases revoked at a client's request by this node as leader."}),
		expired:       prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_expired_revokes_total", Help: "Leases revoked on expiry by this node as leader."}),
		checkpoints:   prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_checkpoints_total", Help: "Lease checkpoints replicated by this node as leader."}),
		renewLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leasecluster_renewal_duration_seconds",
			Help:    "Server-side renewal latency on the leader: from taking the renewal's batch off the KeepAlive stream to writing its acknowledgement.",
			Buckets: renewLatencyBuckets}),
		expiryLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leasecluster_expiry_lag_seconds",
			Help:    "Per expired lease, on the leader: from its due time (TTL, plus the extension after a Promote) to its revoke applied on the leader, the --revoke-rate limiter's wait included.",
			Buckets: expiryLagBuckets}),
		groupEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_group_commit_entries_total",
			Help: "Log entries proposed for grants and client revokes (one command, or a batch of them)."}),
		groupedCommands: prometheus.NewCounter(prometheus.CounterOpts{Name: "leasecluster_group_commit_batched_total",
			Help: "Grants and client revokes that shared a log entry with others."}),
		grpc: newGRPCMetrics(),
	}
	confirmations := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leasecluster_renewal_confirmations_total",
		Help: "Renewal batches whose leadership confirmation came from raft's recent quorum contacts (by=lease) or from a quorum round (by=round)."}, []string{"by"})
	m.confirmedByLease, m.confirmedByRound = confirmations.WithLabelValues("lease"), confirmations.WithLabelValues("round")
	renewals := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leasecluster_renewals_total",
		Help: "Renewals handled by this node as leader, by outcome: acknowledged (ok, not_found, permission_denied, error) or unconfirmed (leadership not confirmed, no acknowledgement)."},
		[]string{"outcome"})
	m.renewOK, m.renewNotFound, m.renewDenied = renewals.WithLabelValues("ok"), renewals.WithLabelValues("not_found"), renewals.WithLabelValues("permission_denied")
	m.renewError, m.renewUnconfirmed = renewals.WithLabelValues("error"), renewals.WithLabelValues("unconfirmed")
	m.registry.MustRegister(m.leader, m.grants, m.clientRevokes, renewals, m.expired, m.checkpoints, confirmations,
		m.groupEntries, m.groupedCommands, m.renewLatency, m.expiryLag, m.grpc,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leasecluster_applied_index", Help: "Index of the last applied Raft entry."},
			func() float64 { return float64(n.rs.raft.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leasecluster_term", Help: "Current Raft term."},
			func() float64 { return float64(n.rs.raft.CurrentTerm()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leasecluster_leases", Help: "Leases held in this node's replicated state."},
			func() float64 { return float64(n.lessor.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leasecluster_items",
			Help: "Items attached to leases in this node's replicated state."},
			func() float64 { return float64(n.fsm.ItemCount()) }),
		raftCollector{n: n},
	)
	if s := raftSink(); s != nil {
		m.registry.MustRegister(s)
	}
	return m
}

// renewalsAcked counts a batch of acknowledged renewals by outcome and
// observes, for each, the time since start (when its batch was taken off
// the stream). No allocation: the children are resolved, errors are rare
// (and only they are mapped to a code).
func (m *metrics) renewalsAcked(results []RenewResult, start time.Time) {
	if len(results) == 0 {
		return
	}
	ok, notFound, denied, other := 0, 0, 0, 0
	for i := range results {
		if results[i].Err == nil {
			ok++
			continue
		}
		switch status.Code(toStatus(results[i].Err)) {
		case codes.NotFound:
			notFound++
		case codes.PermissionDenied:
			denied++
		default:
			other++
		}
	}
	addCount(m.renewOK, ok)
	addCount(m.renewNotFound, notFound)
	addCount(m.renewDenied, denied)
	addCount(m.renewError, other)
	d := time.Since(start).Seconds()
	for range results {
		m.renewLatency.Observe(d)
	}
}

// renewalsUnconfirmed counts renewals that were made in the lessor but
// never acknowledged: leadership could not be confirmed.
func (m *metrics) renewalsUnconfirmed(n int) { addCount(m.renewUnconfirmed, n) }

// expiredRevokes counts n leases revoked on expiry, whose revoke has just
// been applied on the leader, and observes their expiry lag: the time since
// offered, when the lessor reported them expired (the batch arrived on
// ExpiredLeasesC). The lessor reports a lease when it falls due unless the
// --revoke-rate limiter holds it back; the time it waits there is not in the
// figure (the lessor does not expose a lease's due time).
func (m *metrics) expiredRevokes(revoked []*lessor.Lease) {
	addCount(m.expired, len(revoked))
	for _, l := range revoked {
		m.expiryLag.Observe(l.Overdue().Seconds())
	}
}

func addCount(c prometheus.Counter, n int) {
	if n > 0 {
		c.Add(float64(n))
	}
}
