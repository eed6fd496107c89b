package client_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/leasecluster/leasecluster/client"
)

// TestEndpointFoundAgainWhenItsNameComesBack: an endpoint whose name does
// not resolve (a node that is down has no DNS record in a container or pod
// network) is reached as soon as it does. The client's connections look the
// name up on every attempt; with grpc's dns resolver the lookup of a name
// that never resolved (.invalid) would keep failing, on a schedule that
// grows to 120 s, and no call would get through.
func TestEndpointFoundAgainWhenItsNameComesBack(t *testing.T) {
	fc := startCluster(t, 1, 0)
	const name = "n1.leasecluster.invalid:7001"
	var published atomic.Bool
	dial := func(ctx context.Context, target string) (net.Conn, error) {
		if target != name || !published.Load() {
			return nil, &net.DNSError{Err: "no such host", Name: target, IsNotFound: true}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", fc.Addrs()[0])
	}
	c := newClient(t, []string{name}, client.WithDialOptions(grpc.WithContextDialer(dial)),
		client.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Grant(ctx, time.Minute); err == nil {
		t.Fatal("a grant reached an endpoint whose name has no record")
	}
	published.Store(true)
	if _, err := c.Grant(testContext(t), time.Minute); err != nil {
		t.Fatalf("the endpoint was not reached after its name came back: %v", err)
	}
}
