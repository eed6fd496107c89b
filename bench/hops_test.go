package main

import (
	"math"
	"strings"
	"testing"
)

const sampleMetrics = `# HELP x
leasecluster_raft_commitTime{quantile="0.5"} 0.5
leasecluster_raft_commitTime{quantile="0.9"} 0.9
leasecluster_raft_replication_appendEntries_rpc{peer_id="n2",quantile="0.5"} 0.4
leasecluster_raft_replication_appendEntries_rpc{peer_id="n3",quantile="0.5"} 0.6
grpc_server_handling_seconds_bucket{grpc_method="Grant",le="0.0005"} 0
grpc_server_handling_seconds_bucket{grpc_method="Grant",le="0.001"} 40
grpc_server_handling_seconds_bucket{grpc_method="Grant",le="0.0025"} 100
grpc_server_handling_seconds_bucket{grpc_method="Grant",le="+Inf"} 100
grpc_server_handling_seconds_bucket{grpc_method="Revoke",le="0.001"} 7
`

func TestHopsMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(sampleMetrics))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.quantile("leasecluster_raft_commitTime", "0.5"); got != 0.5 {
		t.Errorf("commitTime p50 = %v, want 0.5", got)
	}
	if got := m.quantile("leasecluster_raft_replication_appendEntries_rpc", "0.5"); got != 0.5 {
		t.Errorf("per-peer p50s are averaged: got %v, want 0.5", got)
	}
	if got := m.quantile("leasecluster_raft_fsm_apply", "0.5"); got != -1 {
		t.Errorf("a missing series gives -1, got %v", got)
	}
	// 50 of 100 is 10 into the 60 of the (1 ms, 2.5 ms] bucket.
	if got, want := m.histogramQuantile("grpc_server_handling_seconds", `grpc_method="Grant"`, 0.5), 0.001+0.0015*10/60; math.Abs(got-want) > 1e-9 {
		t.Errorf("Grant p50 = %v, want %v", got, want)
	}
	if got := m.histogramQuantile("grpc_server_handling_seconds", `grpc_method="KeepAlive"`, 0.5); got != -1 {
		t.Errorf("no observations gives -1, got %v", got)
	}
}
