package client

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/limits"
)

// Lease is a granted lease.
type Lease struct {
	ID  int64
	TTL time.Duration // effective TTL (the server raises short TTLs to its minimum)
}

// LeaseInfo describes a lease as the leader sees it.
type LeaseInfo struct {
	ID         int64
	GrantedTTL time.Duration
	Remaining  time.Duration
	Keys       []string // attached item keys, when asked for
	// Owner is the identity (client certificate CN) that granted the
	// lease; only it, or an admin, may revoke, renew, attach to it or
	// detach from it. Empty: no owner, anyone may.
	Owner string
}

// Item is an item attached to a lease. Revision is its fencing token: the
// Raft index of the attach, strictly increasing for each key.
type Item struct {
	Key      string
	LeaseID  int64
	Value    string
	Revision uint64
}

func itemFromPB(it *leasepb.Item) Item {
	return Item{Key: it.GetKey(), LeaseID: it.GetLeaseId(), Value: it.GetValue(), Revision: it.GetRevision()}
}

type grantConfig struct{ id int64 }

// GrantOption configures Grant.
type GrantOption func(*grantConfig)

// WithID asks for a specific lease ID (Grant fails with ErrLeaseExists if it
// is taken). A chosen ID also makes a Grant idempotent across clients.
func WithID(id int64) GrantOption { return func(g *grantConfig) { g.id = id } }

// Grant creates a lease with the given TTL (whole milliseconds, at least 1 ms).
func (c *Client) Grant(ctx context.Context, ttl time.Duration, opts ...GrantOption) (Lease, error) {
	var g grantConfig
	for _, o := range opts {
		o(&g)
	}
	if err := limits.CheckTTL(ttl); err != nil {
		return Lease{}, invalid(err)
	}
	if g.id != 0 {
		if err := limits.CheckLeaseID(g.id); err != nil {
			return Lease{}, invalid(err)
		}
	}
	req := &leasepb.GrantRequest{Id: g.id, TtlMs: ttl.Milliseconds(), RequestId: newRequestID()}
	var resp *leasepb.GrantResponse
	err := c.do(ctx, ErrLeaseNotFound, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewLeasesClient(cc).Grant(ctx, req)
		return err
	})
	if err != nil {
		return Lease{}, err
	}
	return Lease{ID: resp.GetId(), TTL: time.Duration(resp.GetTtlMs()) * time.Millisecond}, nil
}

// Revoke deletes the lease and every item attached to it.
func (c *Client) Revoke(ctx context.Context, id int64) error {
	req := &leasepb.RevokeRequest{Id: id, RequestId: newRequestID()}
	return c.do(ctx, ErrLeaseNotFound, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := leasepb.NewLeasesClient(cc).Revoke(ctx, req)
		return err
	})
}

// TimeToLive reads a lease (linearizably); withKeys includes its item keys.
func (c *Client) TimeToLive(ctx context.Context, id int64, withKeys bool) (LeaseInfo, error) {
	req := &leasepb.TimeToLiveRequest{Id: id, Keys: withKeys}
	var resp *leasepb.TimeToLiveResponse
	err := c.do(ctx, ErrLeaseNotFound, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewLeasesClient(cc).TimeToLive(ctx, req)
		return err
	})
	if err != nil {
		return LeaseInfo{}, err
	}
	return LeaseInfo{
		ID:         resp.GetId(),
		GrantedTTL: time.Duration(resp.GetGrantedTtlMs()) * time.Millisecond,
		Remaining:  time.Duration(resp.GetRemainingMs()) * time.Millisecond,
		Keys:       resp.GetKeys(),
		Owner:      resp.GetOwner(),
	}, nil
}

// Leases lists every lease (linearizably).
func (c *Client) Leases(ctx context.Context) ([]LeaseInfo, error) {
	var resp *leasepb.LeasesResponse
	err := c.do(ctx, ErrLeaseNotFound, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewLeasesClient(cc).Leases(ctx, &leasepb.LeasesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]LeaseInfo, 0, len(resp.GetLeases()))
	for _, l := range resp.GetLeases() {
		out = append(out, LeaseInfo{
			ID:         l.GetId(),
			GrantedTTL: time.Duration(l.GetGrantedTtlMs()) * time.Millisecond,
			Remaining:  time.Duration(l.GetRemainingMs()) * time.Millisecond,
			Owner:      l.GetOwner(),
		})
	}
	return out, nil
}

// Attach attaches key (with value) to the lease. Re-attaching to the lease
// that already holds the key updates the value and keeps the revision. It
// fails with ErrItemHeld if another lease holds the key and ErrLeaseNotFound
// if the lease does not exist.
func (c *Client) Attach(ctx context.Context, leaseID int64, key, value string) (Item, error) {
	req := &leasepb.AttachRequest{LeaseId: leaseID, Key: key, Value: value, RequestId: newRequestID()}
	var resp *leasepb.AttachResponse
	err := c.do(ctx, ErrLeaseNotFound, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewItemsClient(cc).Attach(ctx, req)
		return err
	})
	if err != nil {
		return Item{}, err
	}
	return itemFromPB(resp.GetItem()), nil
}

// Detach removes key from the lease. It fails with ErrItemNotFound if the key
// is absent and ErrItemHeld if another lease holds it.
func (c *Client) Detach(ctx context.Context, leaseID int64, key string) error {
	req := &leasepb.DetachRequest{LeaseId: leaseID, Key: key, RequestId: newRequestID()}
	return c.do(ctx, ErrItemNotFound, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := leasepb.NewItemsClient(cc).Detach(ctx, req)
		return err
	})
}

// Get reads an item (linearizably).
func (c *Client) Get(ctx context.Context, key string) (Item, error) {
	req := &leasepb.GetRequest{Key: key}
	var resp *leasepb.GetResponse
	err := c.do(ctx, ErrItemNotFound, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewItemsClient(cc).Get(ctx, req)
		return err
	})
	if err != nil {
		return Item{}, err
	}
	return itemFromPB(resp.GetItem()), nil
}

// Status returns the status of the node that answers: the known leader if
// there is one, else an endpoint. Every node answers Status, so this does
// not redirect.
func (c *Client) Status(ctx context.Context) (*leasepb.StatusResponse, error) {
	var resp *leasepb.StatusResponse
	err := c.doAny(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewClusterClient(cc).Status(ctx, &leasepb.StatusRequest{})
		return err
	})
	return resp, err
}

// StatusOf asks one specific node (any address, endpoint or not), once.
func (c *Client) StatusOf(ctx context.Context, endpoint string) (*leasepb.StatusResponse, error) {
	cc, err := c.conn(endpoint)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
	defer cancel()
	resp, err := leasepb.NewClusterClient(cc).Status(ctx, &leasepb.StatusRequest{})
	if err != nil {
		return nil, mapError(err, ErrInternal)
	}
	return resp, nil
}

// Members lists the cluster's members as the answering node sees them.
func (c *Client) Members(ctx context.Context) ([]*leasepb.Member, error) {
	var resp *leasepb.MembersResponse
	err := c.doAny(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewClusterClient(cc).Members(ctx, &leasepb.MembersRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetMembers(), nil
}
