package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

// RenewOnce renews lease id once on a KeepAlive stream of its own, opened
// with ctx, and returns the lease's TTL. Unlike Renew, which uses the
// client's shared stream, the renewal carries ctx's metadata: a gateway that
// renews for many callers (the HTTP API) says on whose behalf each renewal
// is, which lease ownership needs. It follows the leader like every call and
// fails with ErrLeaseNotFound or ErrPermissionDenied when the lease is gone
// or belongs to another identity.
func (c *Client) RenewOnce(ctx context.Context, id int64) (time.Duration, error) {
	var ttl time.Duration
	err := c.do(ctx, ErrLeaseNotFound, func(ctx context.Context, cc *grpc.ClientConn) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the stream
		st, err := leasepb.NewLeasesClient(cc).KeepAlive(sctx)
		if err != nil {
			return err
		}
		if err := st.Send(&leasepb.KeepAliveRequest{Id: id}); err != nil {
			_, err = st.Recv() // the stream's own error says why the send failed
			return err
		}
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		switch resp.GetError() {
		case "":
			if resp.GetTtlMs() <= 0 {
				return status.Errorf(codes.NotFound, "lease %d", id)
			}
			ttl = time.Duration(resp.GetTtlMs()) * time.Millisecond
			return nil
		case "NOT_FOUND":
			return status.Errorf(codes.NotFound, "lease %d", id)
		case "PERMISSION_DENIED":
			return status.Errorf(codes.PermissionDenied, "lease %d belongs to another identity", id)
		default:
			return status.Error(codes.Unavailable, fmt.Sprintf("renewal of lease %d refused: %s", id, resp.GetError()))
		}
	})
	return ttl, err
}
