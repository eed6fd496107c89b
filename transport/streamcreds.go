package transport

import (
	"io"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// plainCreds are a plaintext gRPC server's credentials: none, except that a
// connection opening with StreamPreface goes to serveStream.
type plainCreds struct {
	credentials.TransportCredentials
	serveStream func(net.Conn)
}

// NewPlainServerCreds returns the credentials of a plaintext gRPC server on
// the port that also serves pipeline streams: a connection whose first
// bytes are StreamPreface is handed to serveStream (a Transport's
// ServeStream) and dispatched away from gRPC; every other connection is
// gRPC's, without security, as with insecure.NewCredentials.
func NewPlainServerCreds(serveStream func(net.Conn)) credentials.TransportCredentials {
	return plainCreds{TransportCredentials: insecure.NewCredentials(), serveStream: serveStream}
}

func (c plainCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// gRPC has set raw's deadline (its connection timeout) for the handshake;
	// every gRPC client sends its 24-byte preface at once.
	head := make([]byte, len(StreamPreface))
	if _, err := io.ReadFull(raw, head); err != nil {
		raw.Close()
		return nil, nil, err
	}
	conn := &replayConn{Conn: raw, head: head}
	if IsStreamPreface(head) {
		go c.serveStream(conn)
		return nil, nil, credentials.ErrConnDispatched
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c plainCreds) Clone() credentials.TransportCredentials {
	return plainCreds{TransportCredentials: c.TransportCredentials.Clone(), serveStream: c.serveStream}
}

// replayConn reads head before the rest of the connection.
type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
