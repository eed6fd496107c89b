package server

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"google.golang.org/grpc"
)

// gRPC server metrics, by go-grpc-middleware's Prometheus provider:
// grpc_server_started_total, grpc_server_handled_total (by grpc_code),
// grpc_server_handling_seconds, grpc_server_msg_received_total and
// grpc_server_msg_sent_total, each by grpc_type, grpc_service and
// grpc_method. Every RPC is counted: the public API, the Raft transport
// (its own RPCs and pipeline streams) and grpc-go's health service.

// grpcHandlingBuckets (seconds) span a local unary call (sub-ms) to a
// long-lived stream (KeepAlive, a Raft pipeline), whose handling time is
// its lifetime.
var grpcHandlingBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600}

func newGRPCMetrics() *grpcprom.ServerMetrics {
	return grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(grpcHandlingBuckets)))
}

// grpcUnary counts unary RPCs (one message in, at most one out).
func (m *metrics) grpcUnary() grpc.UnaryServerInterceptor { return m.grpc.UnaryServerInterceptor() }

// grpcStream counts stream RPCs: started, handled by code, and their
// handling time. Their messages are not counted: the provider wraps the
// stream to count each message, at a cost (labels resolved, a slice
// allocated) on every renewal of a KeepAlive stream and every entry of a
// Raft pipeline, the two hottest paths. So the handler gets the stream as
// it came, and grpc_server_msg_*_total count unary RPCs only.
func (m *metrics) grpcStream() grpc.StreamServerInterceptor {
	counted := m.grpc.StreamServerInterceptor()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return counted(srv, ss, info, func(srv any, _ grpc.ServerStream) error { return handler(srv, ss) })
	}
}
