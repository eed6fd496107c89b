package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/leasecluster/leasecluster/leasepb"
)

// ownedLeases answers TimeToLive: lease 1 is owned by "app 1", the others
// have no owner.
type ownedLeases struct {
	leasepb.UnimplementedLeasesServer
}

func (ownedLeases) TimeToLive(_ context.Context, r *leasepb.TimeToLiveRequest) (*leasepb.TimeToLiveResponse, error) {
	resp := &leasepb.TimeToLiveResponse{Id: r.GetId(), GrantedTtlMs: 5000, RemainingMs: 4000, Keys: []string{"k"}}
	if r.GetId() == 1 {
		resp.Owner = "app 1"
	}
	return resp, nil
}

// lease ttl prints the owner when there is one, in text and JSON.
func TestLeaseTTLShowsOwner(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	leasepb.RegisterLeasesServer(srv, ownedLeases{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	run := func(args ...string) string {
		t.Helper()
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append(args, "--endpoints", lis.Addr().String(), "--timeout", "5s"))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	if got, want := run("lease", "ttl", "1"), `lease 1: granted TTL 5s, remaining 4s, owner "app 1", items: k`+"\n"; got != want {
		t.Errorf("text, owned: %q, want %q", got, want)
	}
	if got, want := run("lease", "ttl", "2"), "lease 2: granted TTL 5s, remaining 4s, items: k\n"; got != want {
		t.Errorf("text, no owner: %q, want %q", got, want)
	}
	var js map[string]any
	if err := json.Unmarshal([]byte(run("lease", "ttl", "1", "-o", "json")), &js); err != nil || js["owner"] != "app 1" {
		t.Errorf("json, owned: %v, %v", js, err)
	}
	if out := run("lease", "ttl", "2", "-o", "json"); strings.Contains(out, "owner") {
		t.Errorf("json, no owner: %s", out)
	}
	run("lease", "ttl", "2", "-o", "text") // leave the shared flags as they were
}
