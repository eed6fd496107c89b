package server

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// A leader that loses leadership ends its KeepAlive streams with UNAVAILABLE
// (with a hint once the new leader is known); a follower forwards new streams
// to the leader, but never a stream that was already forwarded; every node
// serves grpc-go's health service.
func TestKeepAliveStreamEndsWhenLeadershipEnds(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	ctx := ctxT(t)
	for _, n := range c.running() {
		resp, err := healthpb.NewHealthClient(dial(t, n.Addr())).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s health: %v %v", n.Name(), resp, err)
		}
	}
	leases := leasepb.NewLeasesClient(dial(t, ld.Addr()))
	g, err := leases.Grant(ctx, &leasepb.GrantRequest{TtlMs: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := leases.KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&leasepb.KeepAliveRequest{Id: g.Id}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.Id != g.Id || resp.TtlMs != 10_000 || resp.Error != "" {
		t.Fatalf("renewal: %v %v", resp, err)
	}
	// A lease that does not exist is answered on the stream, which stays open.
	stream.Send(&leasepb.KeepAliveRequest{Id: 12345})
	if resp, err := stream.Recv(); err != nil || resp.TtlMs != 0 || resp.Error != "NOT_FOUND" {
		t.Fatalf("unknown lease: %v %v", resp, err)
	}

	if err := ld.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	newIdx, _ := c.leaderOtherThan(ld)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := stream.Recv()
		if err == nil {
			if time.Now().After(deadline) {
				t.Fatal("stream still open after leadership moved")
			}
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.Unavailable {
			t.Fatalf("stream ended with %v, want UNAVAILABLE", err)
		}
		// At the moment leadership ends the new leader may not be known
		// yet; a hint that names one must name the new leader.
		for _, d := range st.Details() {
			if h, ok := d.(*leasepb.LeaderHint); ok && h.Address != "" && h.Address != c.node(newIdx).Addr() {
				t.Fatalf("hint names %s, the new leader is %s", h.Address, c.node(newIdx).Addr())
			}
		}
		break
	}
	// The old leader, now a follower, forwards a new stream to the leader.
	s2, err := leases.KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Send(&leasepb.KeepAliveRequest{Id: g.Id}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s2.Recv(); err != nil || resp.Id != g.Id || resp.TtlMs != 10_000 {
		t.Fatalf("renewal through a follower: %v %v", resp, err)
	}
	s2.CloseSend()
	// A stream that a follower already forwarded is never forwarded again.
	fctx := metadata.AppendToOutgoingContext(ctx, "leasecluster-forwarded", "test")
	s3, err := leases.KeepAlive(fctx)
	if err == nil {
		s3.Send(&leasepb.KeepAliveRequest{Id: g.Id})
		_, err = s3.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a forwarded stream at a follower: %v, want UNAVAILABLE", err)
	}
}

// Status is how clients find the leader, so it must stay cheap with any
// number of leases: the state hash, a pass over the whole state, is computed
// only when asked for.
func TestStatusStateHashOnlyOnRequest(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	_, ld := c.leader()
	ctx := ctxT(t)
	grantMany(t, ld, 10, 10*time.Second)
	cl := leasepb.NewClusterClient(dial(t, ld.Addr()))
	plain, err := cl.Status(ctx, &leasepb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if plain.GetStateHash() != "" || plain.GetRole() != "leader" {
		t.Fatalf("plain Status: role %q, state hash %q; want leader and no hash", plain.GetRole(), plain.GetStateHash())
	}
	hashed, err := cl.Status(ctx, &leasepb.StatusRequest{StateHash: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := ld.fsm.StateHash(); hashed.GetStateHash() != want || want == "" {
		t.Fatalf("Status with state_hash = %q, want the node's %q", hashed.GetStateHash(), want)
	}
}
