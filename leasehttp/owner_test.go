package leasehttp_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasehttp"
	"github.com/leasecluster/leasecluster/leasepb"
)

// ownedAPI serves lease 1, owned by app1, and lease 2, without an owner;
// every mutation is refused as another identity's would be.
type ownedAPI struct {
	leasepb.UnimplementedLeasesServer
	leasepb.UnimplementedItemsServer
}

var ownedLeases = []*leasepb.LeaseStatus{
	{Id: 1, GrantedTtlMs: 5000, RemainingMs: 4000, Owner: "app1"},
	{Id: 2, GrantedTtlMs: 5000, RemainingMs: 4000},
}

func (ownedAPI) TimeToLive(_ context.Context, r *leasepb.TimeToLiveRequest) (*leasepb.TimeToLiveResponse, error) {
	l := ownedLeases[0]
	if r.GetId() != 1 {
		l = ownedLeases[1]
	}
	return &leasepb.TimeToLiveResponse{Id: l.Id, GrantedTtlMs: l.GrantedTtlMs, RemainingMs: l.RemainingMs, Keys: []string{"k"}, Owner: l.Owner}, nil
}

func (ownedAPI) Leases(context.Context, *leasepb.LeasesRequest) (*leasepb.LeasesResponse, error) {
	return &leasepb.LeasesResponse{Leases: ownedLeases}, nil
}

func denied() error {
	return status.Error(codes.PermissionDenied, "lessor: permission denied: lease 1 belongs to another identity")
}

func (ownedAPI) Revoke(context.Context, *leasepb.RevokeRequest) (*leasepb.RevokeResponse, error) {
	return nil, denied()
}

func (ownedAPI) Attach(context.Context, *leasepb.AttachRequest) (*leasepb.AttachResponse, error) {
	return nil, denied()
}

func (ownedAPI) Detach(context.Context, *leasepb.DetachRequest) (*leasepb.DetachResponse, error) {
	return nil, denied()
}

// GET /v1/leases/{id} and GET /v1/leases show the owner ("owner", omitted
// when empty); a refusal of another identity is 403 PERMISSION_DENIED.
func TestOwnerAndPermissionDenied(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	leasepb.RegisterLeasesServer(srv, ownedAPI{})
	leasepb.RegisterItemsServer(srv, ownedAPI{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	c, err := client.New(context.Background(), []string{lis.Addr().String()}, client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := leasehttp.NewHandler(leasehttp.Config{Client: c, RequestTimeout: time.Second})

	r := call(t, h, "GET", "/v1/leases/1", "")
	want(t, r, 200, "")
	if r.body["owner"] != "app1" {
		t.Fatalf("GET /v1/leases/1 = %s, want owner app1", r.raw)
	}
	r = call(t, h, "GET", "/v1/leases/2", "")
	want(t, r, 200, "")
	if _, ok := r.body["owner"]; ok {
		t.Fatalf("GET /v1/leases/2 = %s, want no owner field", r.raw)
	}
	r = call(t, h, "GET", "/v1/leases", "")
	want(t, r, 200, "")
	ls, _ := r.body["leases"].([]any)
	if len(ls) != 2 {
		t.Fatalf("GET /v1/leases = %s", r.raw)
	}
	if l0, l1 := ls[0].(map[string]any), ls[1].(map[string]any); l0["owner"] != "app1" || l1["owner"] != nil {
		t.Fatalf("GET /v1/leases = %s, want owner app1 on lease 1 only", r.raw)
	}

	want(t, call(t, h, "DELETE", "/v1/leases/1", ""), 403, "PERMISSION_DENIED")
	want(t, call(t, h, "PUT", "/v1/items/k", `{"lease_id":"1","value":"v"}`), 403, "PERMISSION_DENIED")
	want(t, call(t, h, "DELETE", "/v1/items/k?lease_id=1", ""), 403, "PERMISSION_DENIED")
}
