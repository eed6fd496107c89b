package server

import (
	"context"
	"crypto/tls"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/transport"
)

// Raft's pipelined AppendEntries run over pipeline streams (transport,
// stream.go) on the node's one port, beside gRPC. The gRPC server's
// credentials tell them apart at each connection's handshake and hand a
// pipeline stream to the transport (credentials.ErrConnDispatched): with
// TLS by the negotiated protocol (transport.StreamALPN, and only on a peer
// certificate: rule 11), in plaintext by the connection's first bytes.

// dialPeerStream opens a connection to a member for a pipeline stream: TLS
// with this node's certificate, the member's verified as for gRPC, offering
// transport.StreamALPN alone; or plain TCP.
func (n *Node) dialPeerStream(ctx context.Context, addr string) (net.Conn, error) {
	if n.tls == nil {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	cfg := n.tls.PeerTLS()
	cfg.NextProtos = []string{transport.StreamALPN}
	d := tls.Dialer{Config: cfg}
	return d.DialContext(ctx, "tcp", addr)
}

// dispatchStream takes a TLS connection that negotiated the pipeline stream
// away from gRPC, if a peer certificate opened it.
func dispatchStream(conn net.Conn, role certs.Role, serveStream func(net.Conn)) error {
	if role != certs.RolePeer {
		conn.Close()
		return status.Errorf(codes.PermissionDenied, "server: the raft pipeline stream needs a peer certificate, the connection has a %s certificate", role)
	}
	go serveStream(conn)
	return credentials.ErrConnDispatched
}
