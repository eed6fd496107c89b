package server

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/leasecluster/leasecluster/transport"
)

// grpcServerOptions are the options of the node's one gRPC server: keepalive
// enforcement that clients pinging every 10 s pass, and with TLS the
// credentials that classify each connection's certificate and the
// interceptors that decide, per RPC, who may call what. Without TLS it logs
// once what that exposes.
func (n *Node) grpcServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxRecvMsgSize(64 << 20),
		// Static flow-control windows, as the peers and the client library
		// use: see transport.StreamWindow.
		grpc.InitialWindowSize(transport.StreamWindow), grpc.InitialConnWindowSize(transport.ConnWindow),
		// Outermost, so that RPCs the authorizer refuses are counted too.
		grpc.ChainUnaryInterceptor(n.metrics.grpcUnary()), grpc.ChainStreamInterceptor(n.metrics.grpcStream()),
	}
	if n.tls == nil {
		n.log.Warn("serving plaintext, without certificates: anyone who reaches the gRPC port can send Raft traffic " +
			"(take over leadership, forge entries, wipe the state) and anyone can revoke or take over any lease; " +
			"set --cert-file, --key-file and the CA flags to serve mutual TLS")
		return append(opts, grpc.Creds(transport.NewPlainServerCreds(n.rs.trans.ServeStream)))
	}
	a := authorizer{sec: n.cfg.Security}
	return append(opts, grpc.Creds(newServerCreds(n.tls, n.rs.trans.ServeStream)),
		grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream))
}

// peerDialOptions are the credentials with which this node dials a member
// (raft, forwarding to the leader, membership): its own certificate, and
// the member's verified against the peer CA; and the static windows.
func (n *Node) peerDialOptions() []grpc.DialOption {
	windows := []grpc.DialOption{grpc.WithInitialWindowSize(transport.StreamWindow), grpc.WithInitialConnWindowSize(transport.ConnWindow)}
	if n.tls == nil {
		return append(windows, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	return append(windows, grpc.WithTransportCredentials(credentials.NewTLS(n.tls.PeerTLS())))
}
