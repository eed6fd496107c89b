package server

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/certs"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/transport"
)

// identityKey carries, from a member to another, the identity of the caller
// on whose behalf it acts (its HTTP gateway, a forwarded KeepAlive stream).
// Only a peer's claim is believed.
const identityKey = "leasecluster-identity"

// caller is who a request acts for.
type caller struct {
	identity string // the certificate's CN; "" when anonymous (plaintext, or no certificate)
	admin    bool   // listed in AdminCNs: may act on every lease
	member   bool   // a peer certificate acting for itself (not for a caller of its own)
}

// mayAct reports whether c may act on a lease owned by owner ("" is no
// owner). The FSM applies the same rule to mutations (from the command's
// actor); renewals, which are not log entries, are checked with this.
func (c caller) mayAct(owner string) bool {
	return owner == "" || owner == c.identity || c.admin || c.member
}

type callerKey struct{}

func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// callerOf returns who ctx's request acts for (anonymous if none was set).
func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// authInfo is a TLS connection's credentials with the role and identity its
// certificate gives, worked out once per connection at the handshake.
type authInfo struct {
	credentials.TLSInfo
	role     certs.Role
	identity string
}

// serverCreds are TLS credentials that classify each connection's
// certificate once, at the handshake.
// A connection that negotiated the raft pipeline stream goes to serveStream
// (peerstream.go).
type serverCreds struct {
	credentials.TransportCredentials
	node        *certs.Node
	serveStream func(net.Conn)
}

func newServerCreds(n *certs.Node, serveStream func(net.Conn)) credentials.TransportCredentials {
	cfg := n.ServerTLS()
	cfg.NextProtos = append(cfg.NextProtos, transport.StreamALPN)
	return serverCreds{TransportCredentials: credentials.NewTLS(cfg), node: n, serveStream: serveStream}
}

func (c serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	info, ok := ai.(credentials.TLSInfo)
	if !ok {
		conn.Close()
		return nil, nil, status.Error(codes.Unauthenticated, "server: not a TLS connection")
	}
	role, identity, err := c.node.Classify(info.State.PeerCertificates)
	if err != nil { // verified in the handshake already; a rotated CA in between
		conn.Close()
		return nil, nil, err
	}
	if info.State.NegotiatedProtocol == transport.StreamALPN {
		return nil, nil, dispatchStream(conn, role, c.serveStream)
	}
	return conn, authInfo{TLSInfo: info, role: role, identity: identity}, nil
}

func (c serverCreds) Clone() credentials.TransportCredentials {
	return serverCreds{TransportCredentials: c.TransportCredentials.Clone(), node: c.node, serveStream: c.serveStream}
}

// authorizer decides, per RPC, whether the connection's certificate may call
// the method, and who the call acts for.
type authorizer struct {
	sec Security
}

// raftPrefix is the Raft transport service: peers only.
var raftPrefix = "/" + leasepb.RaftTransport_ServiceDesc.ServiceName + "/"

func (a authorizer) authorize(ctx context.Context, method string) (context.Context, error) {
	if !a.sec.Enabled() {
		return ctx, nil // plaintext: everyone is anonymous, and may do everything
	}
	p, _ := peer.FromContext(ctx)
	var ai authInfo
	if p != nil {
		ai, _ = p.AuthInfo.(authInfo)
	}
	if strings.HasPrefix(method, raftPrefix) {
		if ai.role != certs.RolePeer {
			return nil, status.Errorf(codes.PermissionDenied, "server: %s needs a peer certificate, the connection has a %s certificate", method, ai.role)
		}
		return ctx, nil
	}
	if a.sec.ClientCertAuth && ai.role == certs.RoleNone {
		return nil, status.Error(codes.Unauthenticated, "server: a client certificate is required")
	}
	c := caller{identity: ai.identity, member: ai.role == certs.RolePeer}
	if ai.role == certs.RolePeer {
		// A member acting for a caller of its own says who; it is believed
		// only here, from a peer certificate.
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(identityKey); len(v) > 0 {
				c.identity, c.member = v[0], false
			}
		}
	}
	c.admin = a.sec.isAdmin(c.identity)
	return withCaller(ctx, c), nil
}

func (a authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, callerStream{ServerStream: ss, ctx: ctx})
}

// callerStream is a server stream whose context carries the caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s callerStream) Context() context.Context { return s.ctx }

// mayInspect reports whether the caller may make the expensive
// whole-state calls (the state hash): anyone in plaintext, else admins and
// members acting for themselves.
func (a authorizer) mayInspect(c caller) bool {
	return !a.sec.Enabled() || c.admin || c.member
}

// onBehalf returns ctx with the caller's identity claimed for the next hop,
// for a member that passes a request on to another.
func onBehalf(ctx context.Context, c caller) context.Context {
	return metadata.AppendToOutgoingContext(ctx, identityKey, c.identity)
}
