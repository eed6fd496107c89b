package client_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// ownedAPI answers reads with owned leases and refuses every revoke as a
// node refuses another identity's (PermissionDenied), counting the calls.
type ownedAPI struct {
	leasepb.UnimplementedLeasesServer
	revokes atomic.Int32
}

func (*ownedAPI) TimeToLive(_ context.Context, r *leasepb.TimeToLiveRequest) (*leasepb.TimeToLiveResponse, error) {
	owner := ""
	if r.GetId() == 1 {
		owner = "app1"
	}
	return &leasepb.TimeToLiveResponse{Id: r.GetId(), GrantedTtlMs: 5000, RemainingMs: 4000, Owner: owner}, nil
}

func (*ownedAPI) Leases(context.Context, *leasepb.LeasesRequest) (*leasepb.LeasesResponse, error) {
	return &leasepb.LeasesResponse{Leases: []*leasepb.LeaseStatus{
		{Id: 1, GrantedTtlMs: 5000, RemainingMs: 4000, Owner: "app1"},
		{Id: 2, GrantedTtlMs: 5000, RemainingMs: 4000},
	}}, nil
}

func (a *ownedAPI) Revoke(context.Context, *leasepb.RevokeRequest) (*leasepb.RevokeResponse, error) {
	a.revokes.Add(1)
	return nil, status.Error(codes.PermissionDenied, "lessor: permission denied: lease 1 belongs to another identity")
}

func serveOwned(t *testing.T) (*ownedAPI, *client.Client) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	api := &ownedAPI{}
	leasepb.RegisterLeasesServer(srv, api)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c, err := client.New(context.Background(), []string{lis.Addr().String()}, client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return api, c
}

// The owner travels to LeaseInfo in TimeToLive and Leases.
func TestLeaseInfoOwner(t *testing.T) {
	_, c := serveOwned(t)
	ctx := context.Background()
	for id, want := range map[int64]string{1: "app1", 2: ""} {
		info, err := c.TimeToLive(ctx, id, false)
		if err != nil || info.Owner != want {
			t.Fatalf("TimeToLive(%d) = %+v, %v; want owner %q", id, info, err, want)
		}
	}
	ls, err := c.Leases(ctx)
	if err != nil || len(ls) != 2 || ls[0].Owner != "app1" || ls[1].Owner != "" {
		t.Fatalf("Leases = %+v, %v", ls, err)
	}
}

// PermissionDenied is ErrPermissionDenied, keeps its status, and is not
// retried: the answer will not change.
func TestPermissionDeniedNotRetried(t *testing.T) {
	api, c := serveOwned(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.Revoke(ctx, 1)
	if !errors.Is(err, client.ErrPermissionDenied) || status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Revoke = %v, want ErrPermissionDenied with its status", err)
	}
	for _, other := range []error{client.ErrLeaseNotFound, client.ErrItemHeld, client.ErrInvalidArgument, client.ErrNoLeader, client.ErrInternal} {
		if errors.Is(err, other) {
			t.Fatalf("Revoke's error also matches %v", other)
		}
	}
	if n := api.revokes.Load(); n != 1 {
		t.Fatalf("the revoke was sent %d times, want once", n)
	}
}
