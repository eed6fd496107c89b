package client

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

// SnapshotInfo describes a snapshot received by Snapshot.
type SnapshotInfo struct {
	Index uint64 // the raft index the leader's state was copied at
	Term  uint64 // the term of that entry
	Bytes int64  // bytes written
}

// Snapshot streams a consistent snapshot of the leader's replicated state
// into w, in the snapshot file format (package snapshot; the server's
// Maintenance.Snapshot). It finds the leader like every leader-only call,
// retrying until the leader's first message arrives (each attempt bounded
// by the request timeout); from then on the bytes go to w, and a failure
// ends the call with an error and is not retried (w holds part of a file:
// callers write to a temporary file and keep it only once it validates,
// as snapshot.SaveFile does). With TLS only admins and members may take one
// (ErrPermissionDenied otherwise).
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	var (
		info   SnapshotInfo
		stream leasepb.Maintenance_SnapshotClient
		done   = func() {}
	)
	defer func() { done() }()
	err := c.do(ctx, ErrInternal, func(actx context.Context, cc *grpc.ClientConn) error {
		// The stream outlives the attempt: it runs under ctx, and the
		// attempt's deadline applies only until the first message.
		sctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(actx, cancel)
		s, err := leasepb.NewMaintenanceClient(cc).Snapshot(sctx, &leasepb.SnapshotRequest{})
		if err == nil {
			var first *leasepb.SnapshotChunk
			if first, err = s.Recv(); err == nil && stop() {
				info.Index, info.Term = first.GetIndex(), first.GetTerm()
				stream, done = s, cancel
				return nil
			}
		}
		stop()
		cancel()
		if actx.Err() != nil && ctx.Err() == nil {
			return status.Error(codes.DeadlineExceeded, "client: no snapshot within the request timeout")
		}
		return err
	})
	if err != nil {
		return info, err
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return info, nil
		}
		if err != nil {
			return info, mapError(err, ErrInternal)
		}
		n, err := w.Write(chunk.GetData())
		info.Bytes += int64(n)
		if err != nil {
			return info, err
		}
	}
}

// StateHash is one node's state hash at its applied index.
type StateHash struct {
	Name         string
	Hash         string // hex SHA-256 of the replicated state
	AppliedIndex uint64 // the last entry applied to the hashed state
}

// StateHashOf asks one node for its state hash and the applied index of the
// same cut (Maintenance.StateHash), once. Nodes at the same index must
// report the same hash. With TLS only admins and members may ask.
func (c *Client) StateHashOf(ctx context.Context, endpoint string) (StateHash, error) {
	cc, err := c.conn(endpoint)
	if err != nil {
		return StateHash{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
	defer cancel()
	resp, err := leasepb.NewMaintenanceClient(cc).StateHash(ctx, &leasepb.StateHashRequest{})
	if err != nil {
		return StateHash{}, mapError(err, ErrInternal)
	}
	return StateHash{Name: resp.GetName(), Hash: resp.GetStateHash(), AppliedIndex: resp.GetAppliedIndex()}, nil
}
