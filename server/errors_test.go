package server

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/leasehttp"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
	"github.com/leasecluster/leasecluster/limits"
)

// erringAPI is the gRPC API of a node whose every operation fails with err,
// sent through toStatus as the real API sends its errors.
type erringAPI struct {
	leasepb.UnimplementedLeasesServer
	leasepb.UnimplementedItemsServer
	err error
}

func (a *erringAPI) fail() error { return toStatus(a.err) }

func (a *erringAPI) Grant(context.Context, *leasepb.GrantRequest) (*leasepb.GrantResponse, error) {
	return nil, a.fail()
}

func (a *erringAPI) Revoke(context.Context, *leasepb.RevokeRequest) (*leasepb.RevokeResponse, error) {
	return nil, a.fail()
}

func (a *erringAPI) TimeToLive(context.Context, *leasepb.TimeToLiveRequest) (*leasepb.TimeToLiveResponse, error) {
	return nil, a.fail()
}

func (a *erringAPI) Attach(context.Context, *leasepb.AttachRequest) (*leasepb.AttachResponse, error) {
	return nil, a.fail()
}

func (a *erringAPI) Detach(context.Context, *leasepb.DetachRequest) (*leasepb.DetachResponse, error) {
	return nil, a.fail()
}

func (a *erringAPI) Get(context.Context, *leasepb.GetRequest) (*leasepb.GetResponse, error) {
	return nil, a.fail()
}

// serveErring serves an erringAPI on loopback and returns its address.
func serveErring(t *testing.T, err error) string {
	t.Helper()
	lis, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	srv := grpc.NewServer()
	api := &erringAPI{err: err}
	leasepb.RegisterLeasesServer(srv, api)
	leasepb.RegisterItemsServer(srv, api)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// An operation, as a client call and as the HTTP request that makes it.
type operation struct {
	name               string
	call               func(ctx context.Context, c *client.Client) error
	method, path, body string
}

var (
	opGrant = operation{"grant", func(ctx context.Context, c *client.Client) error {
		_, err := c.Grant(ctx, time.Minute)
		return err
	}, "POST", "/v1/leases", `{"ttl_ms":60000}`}
	opRevoke = operation{"revoke", func(ctx context.Context, c *client.Client) error {
		return c.Revoke(ctx, 7)
	}, "DELETE", "/v1/leases/7", ""}
	opLease = operation{"lease", func(ctx context.Context, c *client.Client) error {
		_, err := c.TimeToLive(ctx, 7, true)
		return err
	}, "GET", "/v1/leases/7", ""}
	opAttach = operation{"attach", func(ctx context.Context, c *client.Client) error {
		_, err := c.Attach(ctx, 7, "k", "v")
		return err
	}, "PUT", "/v1/items/k", `{"lease_id":"7","value":"v"}`}
	opDetach = operation{"detach", func(ctx context.Context, c *client.Client) error {
		return c.Detach(ctx, 7, "k")
	}, "DELETE", "/v1/items/k?lease_id=7", ""}
	opGet = operation{"get", func(ctx context.Context, c *client.Client) error {
		_, err := c.Get(ctx, "k")
		return err
	}, "GET", "/v1/items/k", ""}
)

// clientSentinels are the client's errors of meaning: a translated error
// must match the one it should and no other.
var clientSentinels = []error{
	client.ErrLeaseNotFound, client.ErrLeaseExists, client.ErrItemHeld, client.ErrItemNotFound,
	client.ErrPermissionDenied, client.ErrInvalidArgument, client.ErrUnsupported, client.ErrQuotaExceeded, client.ErrNoLeader, client.ErrInternal,
}

// errorRoundTrips is the error table of the whole stack: a node's error, its
// gRPC code, the client's error and the HTTP answer, for every sentinel of
// lessor, fsm, limits and server (TestErrorTableComplete checks that none is
// missing). Unavailable and DeadlineExceeded are retried by the client until
// its context ends, so they come back as ErrNoLeader.
var errorRoundTrips = []struct {
	name     string
	err      error
	ops      []operation
	code     codes.Code
	client   error
	httpCode int
	httpName string
}{
	{"lessor.ErrLeaseNotFound", lessor.ErrLeaseNotFound, []operation{opLease, opRevoke, opAttach}, codes.NotFound, client.ErrLeaseNotFound, 404, "NOT_FOUND"},
	{"lessor.ErrLeaseExpired", lessor.ErrLeaseExpired, []operation{opLease, opRevoke}, codes.NotFound, client.ErrLeaseNotFound, 404, "NOT_FOUND"},
	{"lessor.ErrItemNotFound", lessor.ErrItemNotFound, []operation{opGet, opDetach}, codes.NotFound, client.ErrItemNotFound, 404, "NOT_FOUND"},
	{"lessor.ErrLeaseExists", lessor.ErrLeaseExists, []operation{opGrant}, codes.AlreadyExists, client.ErrLeaseExists, 409, "ALREADY_EXISTS"},
	{"lessor.ErrItemHeld", lessor.ErrItemHeld, []operation{opAttach, opDetach}, codes.FailedPrecondition, client.ErrItemHeld, 409, "FAILED_PRECONDITION"},
	{"lessor.ErrPermissionDenied", lessor.ErrPermissionDenied, []operation{opRevoke, opAttach, opDetach}, codes.PermissionDenied, client.ErrPermissionDenied, 403, "PERMISSION_DENIED"},
	{"lessor.ErrInvalidID", lessor.ErrInvalidID, []operation{opRevoke}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"lessor.ErrInvalidTTL", lessor.ErrInvalidTTL, []operation{opGrant}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"lessor.ErrInvalidItem", lessor.ErrInvalidItem, []operation{opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"lessor.ErrResetRequired", lessor.ErrResetRequired, []operation{opGrant}, codes.Unavailable, client.ErrNoLeader, 503, "UNAVAILABLE"},
	{"lessor.ErrNotPrimary", lessor.ErrNotPrimary, []operation{opGrant}, codes.Unknown, client.ErrInternal, 500, "INTERNAL"},
	{"fsm.ErrKeyInvalid", fsm.ErrKeyInvalid, []operation{opAttach, opDetach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"fsm.ErrValueTooLarge", fsm.ErrValueTooLarge, []operation{opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"fsm.ErrValueInvalid", fsm.ErrValueInvalid, []operation{opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"fsm.ErrNoLeases", fsm.ErrNoLeases, []operation{opRevoke}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"fsm.ErrDuplicateLease", fsm.ErrDuplicateLease, []operation{opRevoke}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"fsm.ErrRequestIDReused", fsm.ErrRequestIDReused, []operation{opGrant, opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"fsm.ErrUnsupportedVersion", fsm.ErrUnsupportedVersion, []operation{opGrant, opAttach, opDetach}, codes.Unimplemented, client.ErrUnsupported, 501, "UNIMPLEMENTED"},
	{"server.ErrQuotaExceeded", ErrQuotaExceeded, []operation{opGrant, opAttach}, codes.ResourceExhausted, client.ErrQuotaExceeded, 429, "RESOURCE_EXHAUSTED"},
	{"fsm.ErrUndecodable", fsm.ErrUndecodable, []operation{opGrant}, codes.Unknown, client.ErrInternal, 500, "INTERNAL"},
	{"fsm.ErrNotBatchable", fsm.ErrNotBatchable, []operation{opGrant}, codes.Unknown, client.ErrInternal, 500, "INTERNAL"},
	{"limits.ErrKeyInvalid", limits.ErrKeyInvalid, []operation{opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"limits.ErrValueTooLarge", limits.ErrValueTooLarge, []operation{opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"limits.ErrValueInvalid", limits.ErrValueInvalid, []operation{opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"limits.ErrTTLInvalid", limits.ErrTTLInvalid, []operation{opGrant}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"limits.ErrLeaseIDInvalid", limits.ErrLeaseIDInvalid, []operation{opLease, opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"limits.ErrIdentityInvalid", limits.ErrIdentityInvalid, []operation{opGrant, opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"limits.ErrBodyTooLarge", limits.ErrBodyTooLarge, []operation{opAttach}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"server.ErrInvalidArgument", ErrInvalidArgument, []operation{opGrant}, codes.InvalidArgument, client.ErrInvalidArgument, 400, "INVALID_ARGUMENT"},
	{"server.ErrNotLeader", ErrNotLeader, []operation{opGrant, opGet}, codes.Unavailable, client.ErrNoLeader, 503, "UNAVAILABLE"},
	{"server.ErrOutcomeUnknown", ErrOutcomeUnknown, []operation{opGrant, opAttach}, codes.Unavailable, client.ErrNoLeader, 503, "UNAVAILABLE"},
	{"server.ErrStopped", ErrStopped, []operation{opGrant, opLease}, codes.Unavailable, client.ErrNoLeader, 503, "UNAVAILABLE"},
	{"server.NotLeaderError", &NotLeaderError{}, []operation{opGrant, opGet}, codes.Unavailable, client.ErrNoLeader, 503, "UNAVAILABLE"},
	{"context.DeadlineExceeded", context.DeadlineExceeded, []operation{opGrant}, codes.DeadlineExceeded, client.ErrNoLeader, 503, "UNAVAILABLE"},
	{"context.Canceled", context.Canceled, []operation{opGrant}, codes.Canceled, context.Canceled, 500, "INTERNAL"},
}

// TestErrorRoundTrip sends every sentinel, wrapped as the node wraps its
// errors, through toStatus, gRPC, the client's translation and the HTTP
// API, and checks that it comes back as itself (or its documented client
// equivalent) at each step.
func TestErrorRoundTrip(t *testing.T) {
	const patience = 150 * time.Millisecond // how long the retried ones are retried
	for _, tc := range errorRoundTrips {
		t.Run(tc.name, func(t *testing.T) {
			err := fmt.Errorf("apply: %w", tc.err)
			st, ok := status.FromError(toStatus(err))
			if !ok || st.Code() != tc.code || !strings.Contains(st.Message(), tc.err.Error()) {
				t.Fatalf("toStatus = %v %q, want %v with the error's text", st.Code(), st.Message(), tc.code)
			}
			addr := serveErring(t, err)
			c, cerr := client.New(context.Background(), []string{addr}, client.WithBackoff(time.Millisecond, 10*time.Millisecond))
			if cerr != nil {
				t.Fatal(cerr)
			}
			t.Cleanup(func() { _ = c.Close() })
			h := leasehttp.NewHandler(leasehttp.Config{Client: c, Local: noLocal{}, RequestTimeout: patience})
			for _, op := range tc.ops {
				ctx, cancel := context.WithTimeout(context.Background(), patience)
				got := op.call(ctx, c)
				cancel()
				if !errors.Is(got, tc.client) {
					t.Errorf("%s: client error %v, want %v", op.name, got, tc.client)
				}
				for _, other := range clientSentinels {
					if other != tc.client && errors.Is(got, other) {
						t.Errorf("%s: client error %v also matches %v", op.name, got, other)
					}
				}
				if tc.client != client.ErrNoLeader && status.Code(got) != tc.code {
					t.Errorf("%s: client error carries code %v, want %v", op.name, status.Code(got), tc.code)
				}

				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(op.method, op.path, strings.NewReader(op.body)))
				if rec.Code != tc.httpCode || !strings.Contains(rec.Body.String(), `"code":"`+tc.httpName+`"`) {
					t.Errorf("%s over HTTP: %d %s, want %d %s", op.name, rec.Code, rec.Body.String(), tc.httpCode, tc.httpName)
				}
			}
		})
	}
}

// noLocal is a LocalNode for handlers whose tests never ask for status.
type noLocal struct{}

func (noLocal) Status(context.Context) (*leasepb.StatusResponse, error) {
	return nil, errors.New("no status")
}
func (noLocal) Ready() error { return errors.New("not ready") }

// TestErrorTableComplete: every exported Err variable of lessor, fsm,
// limits and server has a row in errorRoundTrips, so that a new sentinel
// cannot be added without deciding how it travels.
func TestErrorTableComplete(t *testing.T) {
	rows := make(map[string]bool)
	for _, tc := range errorRoundTrips {
		rows[tc.name] = true
	}
	for pkg, dir := range map[string]string{"lessor": "../lessor", "fsm": "../fsm", "limits": "../limits", "server": "."} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v", dir, err)
		}
		found := 0
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					for _, name := range spec.(*ast.ValueSpec).Names {
						if strings.HasPrefix(name.Name, "Err") && name.IsExported() {
							found++
							if !rows[pkg+"."+name.Name] {
								t.Errorf("%s.%s has no row in errorRoundTrips", pkg, name.Name)
							}
						}
					}
				}
			}
		}
		if found == 0 {
			t.Errorf("no sentinel found in %s", dir)
		}
	}
}
