package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/leasecluster/leasecluster/internal/dialtarget"
)

// Defaults for the options.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultBackoffBase    = 10 * time.Millisecond
	DefaultBackoffMax     = 250 * time.Millisecond
	// maxRedirects bounds how many LeaderHints one attempt chain follows
	// without a backoff, so two nodes that each name the other (a stale view
	// during an election) cannot make the client spin.
	maxRedirects = 3
)

type config struct {
	dialTimeout    time.Duration
	requestTimeout time.Duration
	backoffBase    time.Duration
	backoffMax     time.Duration
	maxAttempts    int // 0: until the context ends
	logger         hclog.Logger
	tls            *tls.Config // nil: plaintext
	dialOpts       []grpc.DialOption
	// renewalObserver sees every KeepAlive renewal (observe.go); nil: none.
	renewalObserver func(RenewalEvent)
}

// Option configures a Client.
type Option func(*config)

// WithDialTimeout bounds how long one connection attempt to a node may take
// (grpc MinConnectTimeout).
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithRequestTimeout bounds one attempt of a call; a call as a whole is
// bounded by its context. An attempt that times out is retried (with the same
// request ID) while the context allows.
func WithRequestTimeout(d time.Duration) Option { return func(c *config) { c.requestTimeout = d } }

// WithBackoff sets the jittered exponential backoff between attempts that got
// no leader hint.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) { c.backoffBase, c.backoffMax = base, max }
}

// WithMaxAttempts bounds the attempts of one call (the retry budget); 0, the
// default, retries until the call's context ends.
func WithMaxAttempts(n int) Option { return func(c *config) { c.maxAttempts = n } }

// WithLogger sets the logger (default: discard).
func WithLogger(l hclog.Logger) Option { return func(c *config) { c.logger = l } }

// WithTLS makes every connection the client opens (to endpoints and to
// hinted leaders alike) use TLS with cfg instead of the default insecure
// transport credentials: cfg's roots (or VerifyConnection, as
// certs.DialTLS's) verify the node, and its certificate, if any, is the
// client's. A nil cfg keeps plaintext. The server name checked is the
// dialled host unless cfg.ServerName is set.
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// WithDialOptions appends grpc.DialOptions (credentials, interceptors, a
// custom dialer such as bufconn's). The defaults are insecure transport
// credentials (TLS with WithTLS), a 10 s keepalive ping and a reconnect
// backoff capped at 1 s.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// Client talks to a leasecluster. It is safe for concurrent use.
type Client struct {
	cfg       config
	endpoints []string

	mu sync.Mutex // guards the fields below
	// conns holds one gRPC channel per address, endpoints and hinted leaders alike.
	conns  map[string]*grpc.ClientConn
	leader string // address of the last node that answered a leader-only call, or a hinted leader
	next   int    // round-robin index into endpoints when no leader is known
	closed bool
	ka     *keepAliveManager // created on first KeepAlive
}

// New returns a client for the cluster reachable at endpoints (gRPC
// addresses, host:port). It does not wait for any endpoint: connections are
// made lazily and the first call discovers the leader. ctx is only checked,
// so that a caller that already gave up gets no client.
func New(ctx context.Context, endpoints []string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", ErrInvalidArgument)
	}
	cfg := config{
		dialTimeout:    DefaultDialTimeout,
		requestTimeout: DefaultRequestTimeout,
		backoffBase:    DefaultBackoffBase,
		backoffMax:     DefaultBackoffMax,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.dialTimeout <= 0 || cfg.requestTimeout <= 0 || cfg.backoffBase <= 0 || cfg.backoffMax < cfg.backoffBase || cfg.maxAttempts < 0 {
		return nil, fmt.Errorf("%w: bad option values", ErrInvalidArgument)
	}
	if cfg.logger == nil {
		cfg.logger = hclog.NewNullLogger()
	}
	return &Client{
		cfg:       cfg,
		endpoints: append([]string(nil), endpoints...),
		conns:     make(map[string]*grpc.ClientConn),
		next:      rand.IntN(len(endpoints)), // spread clients over the endpoints
	}, nil
}

// Endpoints returns the endpoints the client was created with.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// Leader returns the address the client currently believes leads ("" if unknown).
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Close stops the KeepAlive stream (every KeepAlive reports ErrClosed) and
// closes all connections. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	ka := c.ka
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	if ka != nil {
		ka.stop()
	}
	var errs []error
	for _, cc := range conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// conn returns the channel to addr, creating it on first use. Addresses from
// leader hints get channels too, even if they are not endpoints.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	creds := insecure.NewCredentials()
	if c.cfg.tls != nil {
		creds = credentials.NewTLS(c.cfg.tls) // clones cfg
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			// A restarted node must be found again quickly, not after grpc's
			// default 120 s maximum reconnect backoff.
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: c.cfg.dialTimeout,
		}),
		// The server's keepalive enforcement permits pings every 10 s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		// Static flow-control windows turn off grpc-go's bandwidth-delay
		// probing, which answers nearly every message with a ping of its
		// own (the nodes do the same: transport.StreamWindow).
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow),
	}
	opts = append(opts, c.cfg.dialOpts...)
	cc, err := grpc.NewClient(dialtarget.For(addr), opts...)
	if err != nil {
		return nil, fmt.Errorf("client: connect %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// pick returns the address to try next: the known leader, else the next endpoint.
func (c *Client) pick() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" {
		return c.leader
	}
	return c.endpoints[c.next%len(c.endpoints)]
}

// noteLeader records that addr answered a leader-only call (or was hinted).
func (c *Client) noteLeader(addr string) {
	c.mu.Lock()
	c.leader = addr
	c.mu.Unlock()
}

// forget drops addr as the leader guess and moves the round robin past it.
func (c *Client) forget(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == addr {
		c.leader = ""
	}
	if c.endpoints[c.next%len(c.endpoints)] == addr {
		c.next++
	}
}

// backoff returns the jittered delay before attempt n (n >= 1): exponential
// from backoffBase, capped at backoffMax, uniformly drawn from [d/2, d] so
// that clients that failed together do not retry together.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.backoffBase
	for i := 1; i < n && d < c.cfg.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.backoffMax)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do runs call against the leader, following hints and retrying retriable
// failures until ctx ends or the retry budget is spent. call must reuse the
// same request (and request ID) on every attempt. notFound is the sentinel a
// NotFound status maps to for this operation.
func (c *Client) do(ctx context.Context, notFound error, call func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return c.run(ctx, notFound, true, call)
}

// doAny is do for calls that every node answers (Status, Members): success
// says nothing about leadership, so it does not update the leader guess.
func (c *Client) doAny(ctx context.Context, call func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return c.run(ctx, ErrInternal, false, call)
}

func (c *Client) run(ctx context.Context, notFound error, leaderOnly bool, call func(ctx context.Context, cc *grpc.ClientConn) error) error {
	var last error
	redirects := 0
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return finalError(ctx, last)
		}
		target := c.pick()
		cc, err := c.conn(target)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
		err = call(actx, cc)
		cancel()
		if err == nil {
			if leaderOnly {
				c.noteLeader(target)
			}
			return nil
		}
		retry, hint := retriable(err)
		if !retry {
			if ctx.Err() != nil {
				return finalError(ctx, last)
			}
			return mapError(err, notFound)
		}
		last = err
		if ctx.Err() != nil {
			return finalError(ctx, last)
		}
		if c.cfg.maxAttempts > 0 && attempt >= c.cfg.maxAttempts {
			return finalError(ctx, last)
		}
		if hint != "" && hint != target && redirects < maxRedirects {
			c.cfg.logger.Debug("following leader hint", "from", target, "leader", hint)
			c.noteLeader(hint)
			redirects++
			continue
		}
		redirects = 0
		c.forget(target)
		if err := sleep(ctx, c.backoff(attempt)); err != nil {
			return finalError(ctx, last)
		}
	}
}

// streamWindow and connWindow are the HTTP/2 flow-control windows of a
// stream and of a connection: the nodes' (transport.StreamWindow, which
// this package cannot import). Static windows turn off grpc-go's
// bandwidth-delay probe and its ping per message.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// newRequestID returns a random non-zero request ID; one logical operation
// keeps its ID across retries so the server applies it at most once.
func newRequestID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}
