package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/snapshot"
)

// loadedCluster is a source cluster with leases (some owned), items (some
// re-attached to another lease, some detached), revoked leases and dedupe
// entries; the short leases are renewed just before the caller saves.
type loadedCluster struct {
	c     *testCluster
	short []lessor.LeaseID // TTL shortTTL, renewed by renewShort
	long  []lessor.LeaseID // TTL longTTL
}

const (
	shortTTL = 3 * time.Second
	longTTL  = time.Minute
)

func newLoadedCluster(t *testing.T) *loadedCluster {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	_, ld := c.leader()
	ctx := ctxT(t)
	app1 := withCaller(ctx, caller{identity: "app1"})
	lc := &loadedCluster{c: c}
	var reqID uint64 = 1000
	grant := func(ctx context.Context, ttl time.Duration) lessor.LeaseID {
		reqID++
		id, _, err := ld.ops.grant(ctx, 0, ttl.Milliseconds(), reqID)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	attach := func(ctx context.Context, id lessor.LeaseID, key string) {
		reqID++
		if _, err := ld.ops.attach(ctx, id, key, "v-"+key, reqID); err != nil {
			t.Fatalf("attach %s to %d: %v", key, id, err)
		}
	}
	for i := range 24 {
		gctx := ctx
		if i%3 == 0 {
			gctx = app1 // owned by app1
		}
		id := grant(gctx, longTTL)
		lc.long = append(lc.long, id)
		attach(gctx, id, fmt.Sprintf("svc/%02d/a", i))
		attach(gctx, id, fmt.Sprintf("svc/%02d/b", i))
	}
	for i := range 3 {
		id := grant(ctx, shortTTL)
		lc.short = append(lc.short, id)
		attach(ctx, id, fmt.Sprintf("short/%d", i))
	}
	// Churn: detach, re-attach under another lease (a new revision), revoke.
	reqID++
	if err := ld.ops.detach(ctx, lc.long[1], "svc/01/a", reqID); err != nil {
		t.Fatal(err)
	}
	attach(ctx, lc.long[2], "svc/01/a")
	for _, id := range lc.long[22:] {
		reqID++
		if err := ld.ops.revoke(ctx, id, reqID); err != nil {
			t.Fatal(err)
		}
	}
	lc.long = lc.long[:22]
	return lc
}

// renewShort renews the short leases on the leader.
func (lc *loadedCluster) renewShort(t *testing.T) {
	_, ld := lc.c.leader()
	for _, id := range lc.short {
		if _, err := renewOne(ctxT(t), ld, id); err != nil {
			t.Fatal(err)
		}
	}
}

// restoredCluster restores path into fresh data dirs for three new nodes
// with the given grace, checks that every node's restore agrees, and starts
// them (InitialCluster is set too, as an operator would: it is ignored).
func restoredCluster(t *testing.T, path string, g snapshot.Grace) (*testCluster, RestoreResult, time.Time) {
	t.Helper()
	var peers []Peer
	var lis []net.Listener
	for i := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis = append(lis, l)
		peers = append(peers, Peer{Name: fmt.Sprintf("r%d", i+1), Address: l.Addr().String()})
	}
	c := &testCluster{t: t}
	t.Cleanup(c.stopAll)
	var res RestoreResult
	for i, p := range peers {
		cfg := Config{
			Name: p.Name, DataDir: filepath.Join(t.TempDir(), "data"), GRPCAddr: p.Address, InitialCluster: peers,
			HeartbeatTimeout: testElection, ElectionTimeout: testElection, Extend: testExtend, ApplyTimeout: 5 * time.Second,
			Logger: hclog.New(&hclog.LoggerOptions{Name: p.Name, Level: testLogLevel, Output: testWriter{t}}),
		}
		r, err := Restore(cfg, path, g)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && (r.StateHash != res.StateHash || r.Index != res.Index || r.Term != res.Term) {
			t.Fatalf("node %s restored %+v, node r1 %+v", p.Name, r, res)
		}
		res = r
		c.cfgs = append(c.cfgs, cfg)
	}
	start := time.Now()
	for i, cfg := range c.cfgs {
		n, err := NewWithListener(cfg, lis[i])
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
		if i == 0 {
			// Before any new entry: the state is the restored one.
			if h, idx := n.fsm.StateHashAt(); h != res.StateHash || idx != res.Index {
				t.Fatalf("node started with hash %.8s at %d, restore said %.8s at %d", h, idx, res.StateHash, res.Index)
			}
		}
	}
	return c, res, start
}

func clientOf(t *testing.T, c *testCluster) *client.Client {
	var eps []string
	for _, n := range slices.Backward(c.running()) { // followers often first
		eps = append(eps, n.Addr())
	}
	cl, err := client.New(context.Background(), eps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// saveFile saves a snapshot of c through the client library.
func saveFile(t *testing.T, c *testCluster) (string, snapshot.Summary) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backup.snap")
	cl := clientOf(t, c)
	sum, err := snapshot.SaveFile(path, func(w io.Writer) error {
		_, err := cl.Snapshot(ctxT(t), w)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// TestSnapshotSaveAndRestore: a snapshot saved from a loaded cluster (through
// a follower, by gRPC and by HTTP) is the cluster's state at its index;
// restored into a fresh three-node cluster it gives every node the same
// state (hash), the same leases, items, revisions, owners and dedupe
// entries; no restored lease expires before its remaining TTL + grace from
// the start; the raft term and index continue above the backup's, and a new
// attach gets a revision above every restored one.
func TestSnapshotSaveAndRestore(t *testing.T) {
	lc := newLoadedCluster(t)
	lc.renewShort(t)
	hash := lc.c.converge()
	path, sum := saveFile(t, lc.c)
	saved, _, err := snapshot.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if h, err := restoredHash(data); err != nil || h != hash {
		t.Fatalf("the saved snapshot holds state %.8s (%v), the cluster %.8s", h, err, hash)
	}
	if len(saved.Leases) != 25 || len(saved.Items) != 47 || len(saved.Dedupe) == 0 || sum.Index < snapshot.MaxRevision(saved) {
		t.Fatalf("saved %d leases, %d items, %d dedupe entries at index %d", len(saved.Leases), len(saved.Items), len(saved.Dedupe), sum.Index)
	}
	// GET /v1/snapshot on a follower: the same state.
	var follower *Node
	for _, n := range lc.c.running() {
		if !n.IsLeader() {
			follower = n
		}
	}
	resp, err := http.Get("http://" + follower.HTTPAddr() + "/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if h, err := restoredHash(body); resp.StatusCode != 200 || err != nil || h != hash || resp.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Fatalf("GET /v1/snapshot: %d, %d bytes, hash %.8s (%v), want %.8s", resp.StatusCode, len(body), h, err, hash)
	}
	lc.c.stopAll()

	grace := 2 * time.Second
	c, res, start := restoredCluster(t, path, snapshot.Grace{D: grace})
	if res.Index < sum.Index || res.Index < snapshot.MaxRevision(saved) || res.Term != sum.Term {
		t.Fatalf("restored at index %d term %d; backup at %d term %d, highest revision %d", res.Index, res.Term, sum.Index, sum.Term, snapshot.MaxRevision(saved))
	}
	_, ld := c.leader()
	c.converge()
	if st := ld.info.status(false); st.Term <= sum.Term || st.LastIndex <= res.Index {
		t.Errorf("new leader at term %d, last index %d; the backup's term %d, index %d", st.Term, st.LastIndex, sum.Term, res.Index)
	}

	// Grace: every lease lives at least its remaining TTL at save time plus
	// the grace, counted from the start (short leases: watched until then).
	for _, l := range saved.Leases {
		want := time.Duration(l.TTL)*time.Millisecond + grace - time.Since(start) - 50*time.Millisecond
		if got := ld.lessor.Lookup(l.ID); got == nil || got.Remaining() < want {
			t.Fatalf("lease %d (TTL %d ms) restored with %v left, want at least %v", l.ID, l.TTL, got.Remaining(), want)
		}
	}
	for time.Since(start) < shortTTL+grace-100*time.Millisecond {
		for _, id := range lc.short {
			if ld.lessor.Lookup(id) == nil {
				t.Fatalf("short lease %d gone %v after the start, before TTL %v + grace %v", id, time.Since(start), shortTTL, grace)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	err = eventually(shortTTL+grace+testExtend+10*time.Second, func() error {
		for _, id := range lc.short {
			if ld.lessor.Lookup(id) != nil {
				return fmt.Errorf("short lease %d still there", id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err) // a restored lease must still expire
	}

	// Same leases (but the expired short ones), items, revisions, owners
	// and dedupe entries, seen in a snapshot of the new cluster.
	c.converge()
	path2, _ := saveFile(t, c)
	now, _, err := snapshot.ReadFile(path2)
	if err != nil {
		t.Fatal(err)
	}
	var wantLeases, gotLeases []string
	for _, l := range saved.Leases {
		if !slices.Contains(lc.short, l.ID) {
			wantLeases = append(wantLeases, fmt.Sprint(l.ID, l.TTL, l.Owner, l.Keys))
		}
	}
	for _, l := range now.Leases {
		gotLeases = append(gotLeases, fmt.Sprint(l.ID, l.TTL, l.Owner, l.Keys))
	}
	var wantItems []snapshot.Item
	for _, it := range saved.Items {
		if !slices.Contains(lc.short, it.LeaseID) {
			wantItems = append(wantItems, it)
		}
	}
	if !slices.Equal(gotLeases, wantLeases) || !slices.Equal(now.Items, wantItems) || !slices.Equal(now.Dedupe, saved.Dedupe) {
		t.Fatalf("restored cluster holds\n%v\n%v\nwant\n%v\n%v", gotLeases, now.Items, wantLeases, wantItems)
	}
	if now.Restore == nil || now.Restore.SourceCRC != sum.Checksum || now.Restore.GraceMs != grace.Milliseconds() {
		t.Fatalf("restore record %+v", now.Restore)
	}

	// A new holder's revision is above every restored one; owners still
	// decide (rule 10): lease long[0] is app1's.
	cl := clientOf(t, c)
	if _, err := cl.Attach(ctxT(t), int64(lc.long[0]), "not/mine", ""); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("anonymous attach to app1's restored lease: %v", err)
	}
	it, err := cl.Attach(ctxT(t), int64(lc.long[1]), "after/restore", "")
	if err != nil {
		t.Fatal(err)
	}
	if max := snapshot.MaxRevision(saved); it.Revision <= max || it.Revision <= res.Index {
		t.Fatalf("new attach got revision %d; highest restored %d, restored index %d", it.Revision, max, res.Index)
	}
	if err := cl.Detach(ctxT(t), int64(lc.long[1]), "svc/01/b"); err != nil {
		t.Fatal(err)
	}
	it, err = cl.Attach(ctxT(t), int64(lc.long[4]), "svc/01/b", "")
	if err != nil || it.Revision <= snapshot.MaxRevision(saved) {
		t.Fatalf("re-attached key got revision %d (%v)", it.Revision, err)
	}
}

// TestRestoreRefusals: restore seeds only an empty data dir, for a member
// of the initial cluster, from a valid file; a refusal writes nothing.
func TestRestoreRefusals(t *testing.T) {
	dir := t.TempDir()
	s := &snapshot.Snapshot{Index: 5, Term: 2, Leases: []lessor.LeaseState{{ID: 1, TTL: 5000}}}
	var buf bytes.Buffer
	if err := snapshot.Write(&buf, s); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.snap")
	bad := filepath.Join(dir, "bad.snap")
	os.WriteFile(good, buf.Bytes(), 0o600)
	os.WriteFile(bad, buf.Bytes()[:buf.Len()-1], 0o600)
	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o700)
	os.WriteFile(filepath.Join(full, "raft.db"), []byte("x"), 0o600)
	peers := []Peer{{Name: "a", Address: "127.0.0.1:1"}, {Name: "b", Address: "127.0.0.1:2"}}
	cfg := func(name, data string) Config {
		return Config{Name: name, DataDir: data, InitialCluster: peers, Logger: hclog.NewNullLogger()}
	}
	for name, tc := range map[string]struct {
		cfg  Config
		file string
	}{
		"not empty":     {cfg("a", full), good},
		"not a member":  {cfg("c", filepath.Join(dir, "d1")), good},
		"corrupt":       {cfg("a", filepath.Join(dir, "d2")), bad},
		"missing":       {cfg("a", filepath.Join(dir, "d3")), filepath.Join(dir, "none")},
		"no cluster":    {Config{Name: "a", DataDir: filepath.Join(dir, "d4")}, good},
		"repeated addr": {Config{Name: "a", DataDir: filepath.Join(dir, "d5"), InitialCluster: []Peer{peers[0], {Name: "b", Address: peers[0].Address}}}, good},
	} {
		if _, err := Restore(tc.cfg, tc.file, snapshot.Grace{TTL: true}); err == nil {
			t.Errorf("%s: restore succeeded", name)
		}
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"bad.snap", "full", "good.snap"}) {
		t.Errorf("refused restores left %v", names)
	}
	if got, _ := os.ReadFile(filepath.Join(full, "raft.db")); string(got) != "x" {
		t.Error("a refused restore touched a data dir")
	}
	// Accepted: the data dir holds raft state whose term is the snapshot's.
	res, err := Restore(cfg("b", filepath.Join(dir, "ok")), good, snapshot.Grace{TTL: true})
	if err != nil || res.Index != 5 || res.Term != 2 || res.Grace != "ttl (each lease's own)" {
		t.Fatalf("Restore = %+v, %v", res, err)
	}
}
