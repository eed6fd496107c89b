package server

import (
	"context"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

// snapshotChunkSize is the most file bytes one SnapshotChunk carries.
const snapshotChunkSize = 1 << 20

// maintenanceAPI serves the Maintenance service: backups (Snapshot) and the
// state hash at an applied index (StateHash). With TLS both are for admins
// and members only, like the state hash of Cluster.Status: each is a pass
// over the whole state, and a backup is all of it.
type maintenanceAPI struct {
	leasepb.UnimplementedMaintenanceServer
	n *Node
}

func (a *maintenanceAPI) mayInspect(ctx context.Context, what string) error {
	if !(authorizer{sec: a.n.cfg.Security}).mayInspect(callerOf(ctx)) {
		return status.Errorf(codes.PermissionDenied, "server: %s is for admins (--admin-cn) and members", what)
	}
	return nil
}

// Snapshot streams a consistent snapshot of the leader's state: after a
// linearizable barrier (leadership confirmed by a quorum, the commit index
// applied), so it holds every write acknowledged before the request, the FSM
// copies its state at its applied index (fsm.FSM.Snapshot, as raft's own
// snapshots do: entries wait only for the copy) and Persist streams it in the
// snapshot format, sorted, with its checksum. A follower answers UNAVAILABLE
// with a LeaderHint (the client follows it).
func (a *maintenanceAPI) Snapshot(_ *leasepb.SnapshotRequest, stream leasepb.Maintenance_SnapshotServer) error {
	ctx := stream.Context()
	if err := a.mayInspect(ctx, "a snapshot"); err != nil {
		return err
	}
	if err := a.n.reader.linearize(ctx); err != nil {
		return toStatus(err)
	}
	snap, err := a.n.fsm.Snapshot()
	if err != nil {
		return toStatus(err)
	}
	defer snap.Release()
	first := &leasepb.SnapshotChunk{}
	if m, ok := snap.(interface{ Meta() (uint64, uint64) }); ok {
		first.Index, first.Term = m.Meta()
	}
	if err := stream.Send(first); err != nil {
		return err
	}
	sink := &chunkSink{send: stream.Send, buf: make([]byte, 0, snapshotChunkSize)}
	if err := snap.Persist(sink); err != nil {
		if sink.err != nil {
			return sink.err // the stream broke: its own status
		}
		return status.Errorf(codes.Internal, "server: snapshot: %v", err)
	}
	a.n.log.Info("snapshot streamed", "index", first.Index, "term", first.Term, "bytes", sink.sent)
	return nil
}

// StateHash answers this node's state hash with the applied index of the
// same cut (fsm.FSM.StateHashAt): nodes at equal indexes must agree.
func (a *maintenanceAPI) StateHash(ctx context.Context, _ *leasepb.StateHashRequest) (*leasepb.StateHashResponse, error) {
	if err := a.mayInspect(ctx, "the state hash"); err != nil {
		return nil, err
	}
	h, idx := a.n.fsm.StateHashAt()
	return &leasepb.StateHashResponse{Name: a.n.cfg.Name, StateHash: h, AppliedIndex: idx}, nil
}

// chunkSink is the raft.SnapshotSink Persist writes into: it sends the
// bytes in chunks of snapshotChunkSize.
type chunkSink struct {
	send func(*leasepb.SnapshotChunk) error
	buf  []byte
	sent int64
	err  error // the first send error
}

var _ raft.SnapshotSink = (*chunkSink)(nil)

func (s *chunkSink) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.err != nil {
			return 0, s.err
		}
		k := min(len(p), snapshotChunkSize-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) == snapshotChunkSize {
			s.flush()
		}
	}
	return n, s.err
}

func (s *chunkSink) flush() {
	if len(s.buf) == 0 || s.err != nil {
		return
	}
	s.err = s.send(&leasepb.SnapshotChunk{Data: s.buf})
	s.sent += int64(len(s.buf))
	s.buf = make([]byte, 0, snapshotChunkSize) // gRPC may still hold the last one
}

func (s *chunkSink) Close() error  { s.flush(); return s.err }
func (s *chunkSink) Cancel() error { return nil }
func (s *chunkSink) ID() string    { return "backup" }
