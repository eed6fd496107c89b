package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/client/clienttest"
	"github.com/leasecluster/leasecluster/limits"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startCluster starts an n-node fake cluster led by node leader.
func startCluster(t *testing.T, n, leader int) *clienttest.Cluster {
	t.Helper()
	fc, err := clienttest.Start(n)
	if err != nil {
		t.Fatal(err)
	}
	fc.SetLeader(leader)
	t.Cleanup(fc.Close)
	return fc
}

func newClient(t *testing.T, endpoints []string, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{client.WithRequestTimeout(2 * time.Second)}, opts...)
	c, err := client.New(context.Background(), endpoints, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A follower's LeaderHint is followed even to an address that is not one of
// the client's endpoints.
func TestFollowsLeaderHintOutsideEndpoints(t *testing.T) {
	fc := startCluster(t, 3, 2)
	c := newClient(t, fc.Addrs()[:1])
	ctx := testContext(t)
	l, err := c.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != clienttest.FirstLeaseID || l.TTL != time.Minute {
		t.Fatalf("lease = %+v", l)
	}
	if got := c.Leader(); got != fc.Addrs()[2] {
		t.Fatalf("leader = %q, want %q", got, fc.Addrs()[2])
	}
	// Leadership moves: the old leader's hint leads to the new one.
	fc.SetLeader(1)
	if _, err := c.TimeToLive(ctx, l.ID, false); err != nil {
		t.Fatal(err)
	}
	if got := c.Leader(); got != fc.Addrs()[1] {
		t.Fatalf("leader = %q, want %q", got, fc.Addrs()[1])
	}
}

// ARCHITECTURE.md rule 6: a reply lost after the operation applied is
// retried with the same request ID, and the server applies it once.
func TestRetryReusesRequestID(t *testing.T) {
	fc := startCluster(t, 3, 0)
	c := newClient(t, fc.Addrs(), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	ctx := testContext(t)
	fc.LoseReplies("Grant", 2)
	l, err := c.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ids := fc.RequestIDs("Grant")
	if len(ids) != 3 || ids[0] == 0 || ids[1] != ids[0] || ids[2] != ids[0] {
		t.Fatalf("request IDs = %v, want the same non-zero ID three times", ids)
	}
	if n := fc.LeaseCount(); n != 1 {
		t.Fatalf("%d leases, want 1", n)
	}

	fc.LoseReplies("Attach", 1)
	it, err := c.Attach(ctx, l.ID, "k", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if ids := fc.RequestIDs("Attach"); len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("attach request IDs = %v", ids)
	}
	// A second Attach is a new operation with a new ID.
	if _, err := c.Attach(ctx, l.ID, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	if ids := fc.RequestIDs("Attach"); len(ids) != 3 || ids[2] == ids[0] {
		t.Fatalf("attach request IDs = %v, want a fresh third ID", ids)
	}
	got, err := c.Get(ctx, "k")
	if err != nil || got.Value != "v2" || got.Revision != it.Revision {
		t.Fatalf("Get = %+v, %v; want value v2 at revision %d", got, err, it.Revision)
	}
}

func TestNoLeader(t *testing.T) {
	fc := startCluster(t, 3, -1)
	c := newClient(t, fc.Addrs(), client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Grant(ctx, time.Minute)
	if !errors.Is(err, client.ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNoLeader and DeadlineExceeded", err)
	}

	// With a retry budget, the call gives up before its context ends.
	c2 := newClient(t, fc.Addrs(), client.WithMaxAttempts(3), client.WithBackoff(time.Millisecond, 2*time.Millisecond))
	if _, err := c2.Grant(testContext(t), time.Minute); !errors.Is(err, client.ErrNoLeader) {
		t.Fatalf("err = %v, want ErrNoLeader", err)
	}

	// A leader that appears while a call retries is found.
	done := make(chan error, 1)
	go func() {
		_, err := c.Grant(testContext(t), time.Minute)
		done <- err
	}()
	fc.SetLeader(2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestOperationsAndErrors(t *testing.T) {
	fc := startCluster(t, 3, 1)
	c := newClient(t, fc.Addrs())
	ctx := testContext(t)

	l, err := c.Grant(ctx, time.Minute, client.WithID(42))
	if err != nil || l.ID != 42 {
		t.Fatalf("Grant = %+v, %v", l, err)
	}
	other, err := c.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.Attach(ctx, 42, "a/b", "x")
	if err != nil || it.Key != "a/b" || it.LeaseID != 42 || it.Value != "x" || it.Revision == 0 {
		t.Fatalf("Attach = %+v, %v", it, err)
	}
	info, err := c.TimeToLive(ctx, 42, true)
	if err != nil || info.GrantedTTL != time.Minute || info.Remaining <= 0 || len(info.Keys) != 1 || info.Keys[0] != "a/b" {
		t.Fatalf("TimeToLive = %+v, %v", info, err)
	}
	all, err := c.Leases(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("Leases = %+v, %v", all, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.GetRole() != "leader" {
		t.Fatalf("Status = %v, %v", st, err)
	}
	st, err = c.StatusOf(ctx, fc.Addrs()[0])
	if err != nil || st.GetRole() != "follower" || st.GetName() != "node0" || st.GetLeader() != "node1" {
		t.Fatalf("StatusOf = %v, %v", st, err)
	}
	ms, err := c.Members(ctx)
	if err != nil || len(ms) != 3 || !ms[1].GetLeader() {
		t.Fatalf("Members = %v, %v", ms, err)
	}

	cases := []struct {
		name string
		err  error
		want error
		code codes.Code
	}{
		{"grant taken id", second(c.Grant(ctx, time.Minute, client.WithID(42))), client.ErrLeaseExists, codes.AlreadyExists},
		{"grant zero ttl", second(c.Grant(ctx, 0)), client.ErrInvalidArgument, codes.Unknown},
		{"revoke missing", c.Revoke(ctx, 7), client.ErrLeaseNotFound, codes.NotFound},
		{"ttl missing", second(c.TimeToLive(ctx, 7, false)), client.ErrLeaseNotFound, codes.NotFound},
		{"attach held", second(c.Attach(ctx, other.ID, "a/b", "y")), client.ErrItemHeld, codes.FailedPrecondition},
		{"attach no lease", second(c.Attach(ctx, 7, "z", "")), client.ErrLeaseNotFound, codes.NotFound},
		{"attach empty key", second(c.Attach(ctx, 42, "", "")), client.ErrInvalidArgument, codes.InvalidArgument},
		{"detach held", c.Detach(ctx, other.ID, "a/b"), client.ErrItemHeld, codes.FailedPrecondition},
		{"detach missing", c.Detach(ctx, 42, "nope"), client.ErrItemNotFound, codes.NotFound},
		{"get missing", second(c.Get(ctx, "nope")), client.ErrItemNotFound, codes.NotFound},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, tc.err, tc.want)
		}
		if got := status.Code(tc.err); got != tc.code {
			t.Errorf("%s: code = %v, want %v", tc.name, got, tc.code)
		}
	}

	// The Grant limits are checked before sending, as package limits' and
	// as the client's own errors.
	for _, tc := range []struct {
		name  string
		err   error
		limit error
	}{
		{"grant zero ttl", second(c.Grant(ctx, 0)), limits.ErrTTLInvalid},
		{"grant sub-ms ttl", second(c.Grant(ctx, time.Millisecond-1)), limits.ErrTTLInvalid},
		{"grant negative id", second(c.Grant(ctx, time.Minute, client.WithID(-1))), limits.ErrLeaseIDInvalid},
	} {
		if !errors.Is(tc.err, client.ErrInvalidArgument) || !errors.Is(tc.err, tc.limit) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument and %v", tc.name, tc.err, tc.limit)
		}
	}

	if err := c.Detach(ctx, 42, "a/b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TimeToLive(ctx, 42, false); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("after revoke: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "x"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }
