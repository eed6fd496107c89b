package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/internal/dialtarget"
	"github.com/leasecluster/leasecluster/leasepb"
)

// StreamWindow and ConnWindow are the HTTP/2 flow-control windows of a
// stream and of a connection, on the peers' connections here and, through
// the node's server options, on every gRPC connection a node serves (the
// client library sets the same on its side). Setting them turns off
// grpc-go's dynamic windows, whose bandwidth-delay probe sends a ping for
// nearly every message that arrives while none is out (and the other side
// answers it): on a two-core machine those extra frames and writer
// wake-ups cost about 5% of one client's grant latency
// (bench/results/design-measurements.md, "server: static gRPC windows").
// They are the largest the probe grows a connection's window to (16 MiB),
// and a quarter of it per stream: a snapshot stream over a 50 ms link still
// moves about 80 MB/s.
const (
	StreamWindow = 4 << 20
	ConnWindow   = 16 << 20
)

// DefaultTimeout is the per-RPC deadline used when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// snapshotTimeoutScale mirrors raft.DefaultTimeoutScale: InstallSnapshot
// gets Timeout once per this many bytes of snapshot (at least once), as
// raft's NetworkTransport does.
const snapshotTimeoutScale = raft.DefaultTimeoutScale

var (
	// ErrClosed is returned by calls on a closed Transport and by RPCs that
	// were pending when it closed. Errors that wrap it also wrap
	// raft.ErrTransportShutdown, which is what raft itself compares with.
	ErrClosed = errors.New("transport: closed")
	// ErrNoLocalAddr is returned by Config.Validate when LocalAddr is empty.
	ErrNoLocalAddr = errors.New("transport: Config.LocalAddr is empty")
	// ErrBadTimeout is returned by Config.Validate for a negative Timeout.
	ErrBadTimeout = errors.New("transport: Config.Timeout is negative")

	errClosed = fmt.Errorf("%w: %w", ErrClosed, raft.ErrTransportShutdown)
)

// Config configures a Transport.
type Config struct {
	// LocalAddr is this node's advertised gRPC address, as its peers dial it.
	LocalAddr raft.ServerAddress
	// DialOptions are appended to the transport's defaults (insecure
	// credentials and a reconnect backoff capped at one second), so a
	// credentials option here replaces the insecure default.
	DialOptions []grpc.DialOption
	// Timeout is the deadline of each unary RPC and of each pipelined
	// AppendEntries; 0 means DefaultTimeout. InstallSnapshot gets Timeout
	// once per 256 KiB of snapshot.
	Timeout time.Duration
	// Logger defaults to a discarding logger.
	Logger hclog.Logger
	// CheckCommand is called on the data of every LogCommand entry a peer
	// sends; an error refuses the whole AppendEntries (InvalidArgument)
	// before raft sees it. nil means fsm.CheckDecodable: an entry the FSM
	// could not decode would stop every replica that applies it. AnyCommand
	// accepts everything (for FSMs of other formats).
	CheckCommand func(data []byte) error
	// DialStream, if set, opens a connection to a peer's address for a
	// pipeline stream (stream.go): plain TCP, or TLS offering StreamALPN
	// alone. nil means pipelines run over gRPC streams. The peer's listener
	// must hand such connections to its ServeStream.
	DialStream func(ctx context.Context, addr string) (net.Conn, error)
	// VoteGate, if set, is asked before a RequestVote or RequestPreVote
	// reaches raft: an error refuses the request (FAILED_PRECONDITION) and
	// raft never sees it. The server refuses votes while the node joins on
	// an empty data dir, until the cluster has made it a voter
	// (ARCHITECTURE.md rule 12): hashicorp/raft would grant them.
	VoteGate func() error
	// Now is the clock of the contacts' send times (LastContact); nil means
	// time.Now. The chaos build passes its skewable clock, the one the
	// node's renew-lease window compares the contacts with.
	Now func() time.Time
}

// contactTime is the send time a contact records for a request sent at
// real: real itself, or Config.Now's reading.
func (t *Transport) contactTime(real time.Time) time.Time {
	if t.now == nil {
		return real
	}
	return t.now()
}

// AnyCommand is a Config.CheckCommand that accepts any command data.
func AnyCommand([]byte) error { return nil }

// Validate reports whether the Config can be used.
func (c Config) Validate() error {
	if c.LocalAddr == "" {
		return ErrNoLocalAddr
	}
	if c.Timeout < 0 {
		return ErrBadTimeout
	}
	return nil
}

// Transport is a raft.Transport over gRPC. Outgoing RPCs go through one
// cached grpc.ClientConn per peer address; incoming RPCs arrive through the
// RaftTransport service registered with Register and are handed to raft on
// the Consumer channel.
type Transport struct {
	localAddr raft.ServerAddress
	timeout   time.Duration
	logger    hclog.Logger
	dialOpts  []grpc.DialOption
	now       func() time.Time // Config.Now; nil: contacts carry the real send time
	// dialStream is Config.DialStream: nil, pipelines run over gRPC.
	dialStream func(ctx context.Context, addr string) (net.Conn, error)
	voteGate   func() error // Config.VoteGate

	// consumeCh is unbuffered, as in raft's NetworkTransport: an RPC counts
	// as delivered only once raft's main loop has taken it.
	consumeCh chan raft.RPC

	heartbeatMu sync.Mutex // guards heartbeatFn
	heartbeatFn func(raft.RPC)

	// contacts are the peers' newest acceptances of this node's leadership.
	contacts contacts

	// terms and checkCommand are what a peer's message is checked against
	// (validate.go).
	terms        termMark
	checkCommand func([]byte) error

	// ctx is the parent of every outgoing RPC and is watched by every
	// incoming one; Close cancels it, so that nothing pending outlives the
	// transport.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // guards the fields below
	closed    bool
	conns     map[raft.ServerAddress]*grpc.ClientConn
	pipelines map[*pipeline]struct{}
	streams   map[net.Conn]struct{} // pipeline streams served (ServeStream)
	streamsWG sync.WaitGroup        // ServeStream calls under way
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

// New returns a Transport. It opens no connection: peers are dialled
// lazily, on the first RPC to each address.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	// grpc's default reconnect backoff grows to two minutes; a peer that
	// comes back after an outage would then stay unreachable (fail-fast
	// RPCs see TRANSIENT_FAILURE) long after it is up. Raft retries on its
	// own schedule, so reconnect quickly.
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: timeout,
		}),
		grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(ConnWindow),
	}
	opts = append(opts, cfg.DialOptions...)
	check := cfg.CheckCommand
	if check == nil {
		check = fsm.CheckDecodable
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		checkCommand: check,
		localAddr:    cfg.LocalAddr,
		timeout:      timeout,
		logger:       logger.Named("transport"),
		dialOpts:     opts,
		now:          cfg.Now,
		consumeCh:    make(chan raft.RPC),
		ctx:          ctx,
		cancel:       cancel,
		conns:        make(map[raft.ServerAddress]*grpc.ClientConn),
		pipelines:    make(map[*pipeline]struct{}),
		streams:      make(map[net.Conn]struct{}),
		dialStream:   cfg.DialStream,
		voteGate:     cfg.VoteGate,
	}, nil
}

// Register registers the RaftTransport service on s, the node's shared
// gRPC server.
func (t *Transport) Register(s *grpc.Server) {
	leasepb.RegisterRaftTransportServer(s, &server{t: t})
}

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr implements raft.Transport.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.localAddr }

// EncodePeer implements raft.Transport: the address is its own encoding.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(buf []byte) raft.ServerAddress { return raft.ServerAddress(buf) }

// SetHeartbeatHandler implements raft.Transport. Heartbeats are then
// answered by cb on the gRPC handler's goroutine instead of queueing behind
// disk-bound RPCs on the Consumer channel.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.heartbeatMu.Lock()
	defer t.heartbeatMu.Unlock()
	t.heartbeatFn = cb
}

func (t *Transport) heartbeatHandler() func(raft.RPC) {
	t.heartbeatMu.Lock()
	defer t.heartbeatMu.Unlock()
	return t.heartbeatFn
}

// Close implements raft.WithClose. It fails pending outgoing RPCs, closes
// pipelines and connections, and makes incoming RPCs that wait for raft
// return Unavailable. It is safe to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	conns, pipes, streams := t.conns, t.pipelines, t.streams
	t.conns, t.pipelines, t.streams = nil, nil, nil
	t.mu.Unlock()

	t.cancel()
	for p := range pipes {
		_ = p.Close()
	}
	for c := range streams {
		_ = c.Close()
	}
	t.streamsWG.Wait()
	var errs []error
	for addr, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("transport: closing connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// client returns a client for target, creating its connection on first use.
// grpc.NewClient does not dial, so holding mu across it is cheap.
func (t *Transport) client(target raft.ServerAddress) (leasepb.RaftTransportClient, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	cc, ok := t.conns[target]
	if !ok {
		var err error
		cc, err = grpc.NewClient(dialtarget.For(string(target)), t.dialOpts...)
		if err != nil {
			return nil, fmt.Errorf("transport: connecting to %s: %w", target, err)
		}
		t.conns[target] = cc
	}
	return leasepb.NewRaftTransportClient(cc), nil
}

// callErr wraps the error of an outgoing RPC. After Close every failure is
// reported as errClosed, whatever gRPC made of the cancellation.
func (t *Transport) callErr(method string, target raft.ServerAddress, err error) error {
	if t.ctx.Err() != nil {
		return fmt.Errorf("transport: %s to %s: %w", method, target, errClosed)
	}
	return fmt.Errorf("transport: %s to %s: %w", method, target, err)
}

// unary runs one unary RPC to target under the per-RPC deadline.
func (t *Transport) unary(target raft.ServerAddress, method string, call func(context.Context, leasepb.RaftTransportClient) error) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	defer cancel()
	if err := call(ctx, c); err != nil {
		return t.callErr(method, target, err)
	}
	return nil
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.unary(target, "AppendEntries", func(ctx context.Context, c leasepb.RaftTransportClient) error {
		t.terms.observe(args.Term)
		sent := t.contactTime(time.Now()) // before the request leaves: the contact proves leadership after this
		out, err := c.AppendEntries(ctx, appendEntriesRequestToProto(args))
		if err != nil {
			return err
		}
		if err := t.decodeAppendEntriesResponse(out, resp); err != nil {
			return err
		}
		t.contacts.record(target, args, resp, sent)
		return nil
	})
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.unary(target, "RequestVote", func(ctx context.Context, c leasepb.RaftTransportClient) error {
		t.terms.observe(args.Term)
		out, err := c.RequestVote(ctx, requestVoteRequestToProto(args))
		if err != nil {
			return err
		}
		return t.decodeRequestVoteResponse(out, resp)
	})
}

// RequestPreVote implements raft.WithPreVote.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.unary(target, "RequestPreVote", func(ctx context.Context, c leasepb.RaftTransportClient) error {
		out, err := c.RequestPreVote(ctx, requestPreVoteRequestToProto(args))
		if err != nil {
			return err
		}
		return t.decodeRequestPreVoteResponse(out, resp)
	})
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.unary(target, "TimeoutNow", func(ctx context.Context, c leasepb.RaftTransportClient) error {
		out, err := c.TimeoutNow(ctx, timeoutNowRequestToProto(args))
		if err != nil {
			return err
		}
		return t.decodeTimeoutNowResponse(out, resp)
	})
}

// snapshotTimeout is the deadline of an InstallSnapshot of size bytes:
// Timeout per 256 KiB, at least Timeout (raft's NetworkTransport rule).
func snapshotTimeout(timeout time.Duration, size int64) time.Duration {
	scale := size / snapshotTimeoutScale
	if scale < 1 {
		return timeout
	}
	// Cap the product well below overflow; a deadline of years is no deadline anyway.
	const maxTimeout = 365 * 24 * time.Hour
	if scale > int64(maxTimeout/timeout) {
		return maxTimeout
	}
	return timeout * time.Duration(scale)
}
