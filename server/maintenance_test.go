package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/snapshot"
)

// TestSnapshotTLSAdminOnly: with TLS, a snapshot (gRPC or HTTP) and the
// state hash are an admin's or a member's; another client certificate is
// refused with PermissionDenied (403 over HTTP) and gets no bytes.
func TestSnapshotTLSAdminOnly(t *testing.T) {
	p := newTestPKI(t)
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Security = p.security(cfg.Name)
		cfg.HTTPAddr = "127.0.0.1:0"
	})
	_, ld := c.leader()
	ctx := ctxT(t)
	app1, admin := p.tlsClient(t, c, "app1"), p.tlsClient(t, c, "admin")
	if _, err := app1.Grant(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	hash := c.converge()

	var buf bytes.Buffer
	if _, err := app1.Snapshot(ctx, &buf); !errors.Is(err, client.ErrPermissionDenied) || buf.Len() != 0 {
		t.Fatalf("snapshot by a non-admin: %v, %d bytes", err, buf.Len())
	}
	if _, err := app1.StateHashOf(ctx, ld.Addr()); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("state hash by a non-admin: %v", err)
	}
	_, err := leasepb.NewMaintenanceClient(p.dialTLS(ld.Addr(), p.clientCA, "app1", time.Time{}, time.Time{})).
		StateHash(ctx, &leasepb.StateHashRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("raw StateHash by a non-admin: %v", err)
	}
	info, err := admin.Snapshot(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := restoredHash(buf.Bytes()); err != nil || h != hash || info.Bytes != int64(buf.Len()) {
		t.Fatalf("admin's snapshot: hash %.8s (%v), want %.8s", h, err, hash)
	}
	if sh, err := admin.StateHashOf(ctx, ld.Addr()); err != nil || sh.Hash != hash || sh.Name != ld.Name() {
		t.Fatalf("admin's state hash: %+v, %v", sh, err)
	}

	var follower *Node
	for _, n := range c.running() {
		if n != ld {
			follower = n
		}
	}
	get := func(cn string) (int, []byte) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(cn)}}
		resp, err := hc.Get("https://" + follower.HTTPAddr() + "/v1/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if code, body := get("app1"); code != http.StatusForbidden || !strings.Contains(string(body), "PERMISSION_DENIED") {
		t.Fatalf("GET /v1/snapshot by a non-admin: %d %s", code, body)
	}
	code, body := get("admin")
	if sum, err := snapshot.Inspect(bytes.NewReader(body)); code != http.StatusOK || err != nil || sum.Leases != 1 {
		t.Fatalf("GET /v1/snapshot by an admin: %d, %v, %+v", code, err, sum)
	}
}

// TestSnapshotStreamsInChunks: the sink sends the file in order, in chunks
// of at most snapshotChunkSize, and reports a broken stream.
func TestSnapshotStreamsInChunks(t *testing.T) {
	var got []byte
	var sizes []int
	s := &chunkSink{send: func(c *leasepb.SnapshotChunk) error {
		got = append(got, c.Data...)
		sizes = append(sizes, len(c.Data))
		return nil
	}}
	want := bytes.Repeat([]byte("0123456789"), snapshotChunkSize/4) // 2.5 chunks
	for rest := want; len(rest) > 0; {
		k := min(len(rest), 70000)
		if _, err := s.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if err := s.Close(); err != nil || !bytes.Equal(got, want) || len(sizes) != 3 || sizes[0] != snapshotChunkSize {
		t.Fatalf("sent %d bytes in chunks %v (%v)", len(got), sizes, err)
	}
	broken := &chunkSink{send: func(*leasepb.SnapshotChunk) error { return errors.New("gone") }}
	broken.Write(want)
	if _, err := broken.Write([]byte("x")); err == nil || broken.Close() == nil {
		t.Fatal("a broken stream was not reported")
	}
}
