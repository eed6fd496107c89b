package server

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/leasecluster/leasecluster/internal/dialtarget"
	"github.com/leasecluster/leasecluster/leasepb"
)

// forwardedKey marks a KeepAlive stream that a follower forwards: the node it
// reaches serves it as leader or refuses it, and never forwards it again, so
// nodes with stale views of the leader cannot pass a stream around in a loop.
const forwardedKey = "leasecluster-forwarded"

// leaderConn keeps one client connection to the current leader, for
// forwarding renewals that reach a follower (ARCHITECTURE.md: a renewal that
// arrives at a follower is forwarded to the leader or answered with a hint).
type leaderConn struct {
	dial []grpc.DialOption // credentials for dialing a member

	mu   sync.Mutex // guards addr and cc
	addr string
	cc   *grpc.ClientConn
}

// get returns a connection to addr, replacing one to a former leader.
func (lc *leaderConn) get(addr string) (*grpc.ClientConn, error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.cc != nil && lc.addr == addr {
		return lc.cc, nil
	}
	if lc.cc != nil {
		lc.cc.Close()
		lc.cc = nil
	}
	cc, err := grpc.NewClient(dialtarget.For(addr), lc.dial...)
	if err != nil {
		return nil, err
	}
	lc.addr, lc.cc = addr, cc
	return cc, nil
}

func (lc *leaderConn) close() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.cc != nil {
		lc.cc.Close()
		lc.cc = nil
	}
}

// forwarder passes KeepAlive streams that reach this follower to the leader.
type forwarder struct {
	rs   *raftStack
	name string // this node's
	conn leaderConn
}

// keepAlive proxies a KeepAlive stream that reached this follower to the
// leader. The leader confirms its leadership for every batch as usual
// (rule 2 counts from the client's send time, which precedes both hops); when
// the leader ends its side (it lost leadership, or failed), the same status,
// hint included, ends this one.
func (f *forwarder) keepAlive(stream leasepb.Leases_KeepAliveServer) error {
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok && len(md.Get(forwardedKey)) > 0 {
		return toStatus(f.rs.notLeader())
	}
	addr, id := f.rs.raft.LeaderWithID()
	if addr == "" || string(id) == f.name {
		return toStatus(f.rs.notLeader())
	}
	cc, err := f.conn.get(string(addr))
	if err != nil {
		return toStatus(f.rs.notLeader())
	}
	// The leader learns whom the stream renews for from this node, a peer.
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(onBehalf(stream.Context(), callerOf(stream.Context())), forwardedKey, f.name))
	defer cancel()
	up, err := leasepb.NewLeasesClient(cc).KeepAlive(ctx)
	if err != nil {
		return toStatus(f.rs.notLeader())
	}
	errc := make(chan error, 2)
	go func() { // leader -> client
		for {
			resp, err := up.Recv()
			if err != nil {
				errc <- err
				return
			}
			if err := stream.Send(resp); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() { // client -> leader
		for {
			req, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				up.CloseSend() // the leader answers what is in flight, then ends with EOF
				return
			}
			if err != nil {
				errc <- err
				return
			}
			if err := up.Send(req); err != nil {
				return // up.Recv reports why
			}
		}
	}()
	if err := <-errc; !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
