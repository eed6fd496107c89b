package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Timings of membership changes.
const (
	// promotePoll is how often the leader reads a catching-up member's
	// applied index.
	promotePoll = 100 * time.Millisecond
	// catchUpLag is how many entries a non-voter's applied index may trail
	// the leader's commit index and still count as caught up: under load the
	// leader commits while the answer travels.
	catchUpLag = 256
	// promoteGiveUp: a promotion ends (the node stays a non-voter) when the
	// member's status could not be read for this long.
	promoteGiveUp = time.Minute
	// removedPoll is how often a node checks whether it is still in the
	// configuration.
	removedPoll = 200 * time.Millisecond
	// joinRetry is how often a joining node asks the cluster again while it
	// is not yet a voter (a new leader knows nothing of a promotion its
	// predecessor was watching).
	joinRetry = 2 * time.Second
	// peerStatusTimeout bounds the read of one member's status.
	peerStatusTimeout = time.Second
)

// memberError is a refusal of a membership change with its gRPC code.
type memberError struct {
	code codes.Code
	msg  string
}

func (e *memberError) Error() string { return e.msg }

func refuse(code codes.Code, format string, args ...any) error {
	return &memberError{code: code, msg: "server: " + fmt.Sprintf(format, args...)}
}

// memberStatus maps a membership error to its gRPC status.
func memberStatus(err error) error {
	var me *memberError
	if errors.As(err, &me) {
		return status.Error(me.code, me.msg)
	}
	return toStatus(err)
}

// nodeName is what a member's name may be: a host name or a tls init name.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// membership changes the cluster's Raft configuration, one change at a time,
// on the leader; on every node it notices a removal of this node, and on a
// node started with --join it asks the cluster to add it. ARCHITECTURE.md,
// data flow "Membership".
type membership struct {
	rs       *raftStack
	self     raft.ServerID
	addr     string // this node's advertised gRPC address
	log      hclog.Logger
	leading  func() bool
	timeout  time.Duration // of one configuration change
	liveness time.Duration // a voter heard from within it counts as alive (the leader lease: raft's own test)
	peers    *peerConns
	stopC    <-chan struct{}
	serving  func(bool) // grpc health: serving, or not (removed)

	mu         sync.Mutex    // guards the fields below
	busy       string        // the change in flight ("" none)
	committing bool          // busy is a configuration change being committed (not a catch-up)
	idle       chan struct{} // closed when busy ends
	promote    *promotion    // the member being caught up, if any
	closed     bool

	removed atomic.Bool
	// holdVotes: this node started on an empty data dir and joins; it
	// refuses vote requests until its join sees it a voter (voteGate).
	holdVotes atomic.Bool
}

// begin claims the one change in flight, or refuses. A change that is only
// being committed (a moment) is waited for, up to the change timeout; a
// member catching up before its promotion (minutes, maybe) is not.
func (m *membership) begin(what string) error {
	deadline := time.Now().Add(m.timeout)
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return ErrStopped
		}
		if m.busy == "" {
			m.busy, m.committing, m.idle = what, true, make(chan struct{})
			m.mu.Unlock()
			return nil
		}
		busy, committing, idle := m.busy, m.committing, m.idle
		m.mu.Unlock()
		wait := time.Until(deadline)
		if !committing || wait <= 0 {
			return refuse(codes.FailedPrecondition, "a membership change is in progress (%s); one change at a time, try again when it is done", busy)
		}
		select {
		case <-idle:
		case <-time.After(wait):
		case <-m.stopC:
			return ErrStopped
		}
	}
}

func (m *membership) end() {
	m.mu.Lock()
	m.busy = ""
	close(m.idle)
	m.mu.Unlock()
}

// committingNow marks the change in flight as being committed.
func (m *membership) committingNow() {
	m.mu.Lock()
	m.committing = true
	m.mu.Unlock()
}

// promoting reports whether name is waiting to be promoted.
func (m *membership) promoting(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.promote != nil && m.promote.name == name
}

// configuration returns raft's latest configuration and its index.
func (m *membership) configuration() (raft.Configuration, uint64, error) {
	f := m.rs.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, 0, m.rs.err(err)
	}
	return f.Configuration(), f.Index(), nil
}

func find(conf raft.Configuration, name string) *raft.Server {
	for i := range conf.Servers {
		if string(conf.Servers[i].ID) == name {
			return &conf.Servers[i]
		}
	}
	return nil
}

func (m *membership) mustLead() error {
	if !m.leading() {
		return m.rs.notLeader()
	}
	return nil
}

// add adds name at addr as a non-voter and, unless nonVoter, starts its
// promotion. replace: the node comes with an empty data dir, so a voter of
// that name is removed first (its acknowledged entries are gone).
func (m *membership) add(name, addr string, nonVoter, replace bool) (Member, error) {
	if !nodeName.MatchString(name) {
		return Member{}, fmt.Errorf("%w: member name %q: letters, digits, '.', '_', '-' (253 at most)", ErrInvalidArgument, name)
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
		return Member{}, fmt.Errorf("%w: member address %q is not host:port", ErrInvalidArgument, addr)
	}
	if err := m.mustLead(); err != nil {
		return Member{}, err
	}
	added := Member{Name: name, Address: addr, Promoting: !nonVoter}
	m.mu.Lock()
	if p := m.promote; p != nil && p.name == name && p.addr == addr && !nonVoter {
		m.mu.Unlock()
		return added, nil // asked again while it catches up: nothing to change
	}
	m.mu.Unlock()
	if err := m.begin("adding " + name); err != nil {
		return Member{}, err
	}
	handedOver := false
	defer func() {
		if !handedOver {
			m.end()
		}
	}()
	conf, idx, err := m.configuration()
	if err != nil {
		return Member{}, err
	}
	for _, s := range conf.Servers {
		if string(s.Address) == addr && string(s.ID) != name {
			return Member{}, refuse(codes.FailedPrecondition, "%s is the address of member %s", addr, s.ID)
		}
	}
	id := raft.ServerID(name)
	if cur := find(conf, name); cur != nil && cur.Suffrage == raft.Voter {
		switch {
		case replace && cur.ID == m.self:
			return Member{}, refuse(codes.FailedPrecondition, "%s is the leader and running; a node with an empty data dir cannot take its place", name)
		case replace:
			if err := m.checkQuorum(conf, name, false); err != nil {
				return Member{}, err
			}
			m.log.Info("replacing a member that comes back with an empty data dir: removing it first", "member", name)
			if err := m.rs.raft.RemoveServer(id, idx, m.timeout).Error(); err != nil {
				return Member{}, m.rs.err(err)
			}
			idx = 0
		case string(cur.Address) == addr && !nonVoter:
			return Member{Name: name, Address: addr, Voter: true}, nil
		case string(cur.Address) != addr:
			return Member{}, refuse(codes.FailedPrecondition, "%s is a voter at %s; remove it first, or start it with an empty data dir and --join", name, cur.Address)
		default:
			return Member{}, refuse(codes.FailedPrecondition, "%s is a voter; remove it first to add it as a non-voter", name)
		}
	}
	if err := m.rs.raft.AddNonvoter(id, raft.ServerAddress(addr), idx, m.timeout).Error(); err != nil {
		return Member{}, m.rs.err(err)
	}
	m.log.Info("added a non-voter", "member", name, "address", addr, "promote", !nonVoter)
	if nonVoter {
		return added, nil
	}
	if err := m.startPromotion(name, addr); err != nil {
		return Member{}, err
	}
	handedOver = true
	return added, nil
}

// checkQuorum refuses a removal of name that would leave fewer live voters
// than a quorum of the voters that remain, unless force. A voter is live if
// it answered this leader's term within the liveness window (raft's
// contacts) and answers a status read now: a node killed a moment ago still
// has a fresh contact. A leader just elected has no contacts of its term
// yet, so a refusal is only given after the heartbeats of a few windows had
// their chance.
func (m *membership) checkQuorum(conf raft.Configuration, name string, force bool) error {
	deadline := time.Now().Add(4 * m.liveness)
	for {
		err := m.quorumAfter(conf, name, force)
		var me *memberError
		if err == nil || time.Now().After(deadline) || !errors.As(err, &me) || strings.Contains(me.msg, "last voter") {
			return err
		}
		select {
		case <-m.stopC:
			return ErrStopped
		case <-time.After(m.liveness / 2):
		}
	}
}

func (m *membership) quorumAfter(conf raft.Configuration, name string, force bool) error {
	term := m.rs.raft.CurrentTerm()
	remaining := 0
	var alive atomic.Int32
	var wg sync.WaitGroup
	for _, s := range conf.Servers {
		if s.Suffrage != raft.Voter || string(s.ID) == name {
			continue
		}
		remaining++
		if s.ID == m.self {
			alive.Add(1)
			continue
		}
		if c, ok := m.rs.trans.LastContact(s.Address); !ok || c.Term != term || time.Since(c.Sent) >= m.liveness {
			continue
		}
		wg.Go(func() {
			if _, err := m.peers.status(context.Background(), string(s.Address)); err == nil {
				alive.Add(1)
			}
		})
	}
	wg.Wait()
	if remaining == 0 {
		return refuse(codes.FailedPrecondition, "%s is the last voter; a cluster cannot remove its last voter", name)
	}
	if quorum := remaining/2 + 1; int(alive.Load()) < quorum && !force {
		return refuse(codes.FailedPrecondition, "removing %s would leave %d live voters of %d, less than a quorum (%d); force to remove it anyway", name, alive.Load(), remaining, quorum)
	}
	return nil
}

// remove removes name. A leader removed hands leadership over first and
// answers with the new leader, where the client retries the removal.
func (m *membership) remove(name string, force bool) error {
	if err := m.mustLead(); err != nil {
		return err
	}
	conf, _, err := m.configuration()
	if err != nil {
		return err
	}
	if find(conf, name) == nil {
		return refuse(codes.NotFound, "no member named %q", name)
	}
	m.cancelPromotion(name) // removing a member that catches up ends its promotion
	if err := m.begin("removing " + name); err != nil {
		return err
	}
	defer m.end()
	conf, idx, err := m.configuration()
	if err != nil {
		return err
	}
	cur := find(conf, name)
	if cur == nil {
		return refuse(codes.NotFound, "no member named %q", name)
	}
	if cur.Suffrage == raft.Voter {
		if err := m.checkQuorum(conf, name, force); err != nil {
			return err
		}
	}
	if cur.ID == m.self {
		m.log.Info("removing the leader: handing leadership over first", "member", name)
		if err := m.rs.raft.LeadershipTransfer().Error(); err != nil {
			return m.rs.err(err)
		}
		return m.awaitOtherLeader()
	}
	if err := m.rs.raft.RemoveServer(cur.ID, idx, m.timeout).Error(); err != nil {
		return m.rs.err(err)
	}
	m.log.Info("removed a member", "member", name, "forced", force)
	return nil
}

// awaitOtherLeader waits (up to the change timeout) until another node is
// known to lead, and answers with it: the client retries there.
func (m *membership) awaitOtherLeader() error {
	deadline := time.Now().Add(m.timeout)
	for {
		if _, id := m.rs.raft.LeaderWithID(); (id != "" && id != m.self) || time.Now().After(deadline) {
			return m.rs.notLeader()
		}
		select {
		case <-m.stopC:
			return ErrStopped
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// transfer hands leadership to the voter name, or to any ("" name).
func (m *membership) transfer(name string) (string, string, error) {
	if err := m.mustLead(); err != nil {
		return "", "", err
	}
	if err := m.begin("transferring leadership"); err != nil {
		return "", "", err
	}
	defer m.end()
	var f raft.Future
	if name == "" {
		f = m.rs.raft.LeadershipTransfer()
	} else {
		conf, _, err := m.configuration()
		if err != nil {
			return "", "", err
		}
		cur := find(conf, name)
		switch {
		case cur == nil:
			return "", "", refuse(codes.NotFound, "no member named %q", name)
		case cur.Suffrage != raft.Voter:
			return "", "", fmt.Errorf("%w: %s is not a voter", ErrInvalidArgument, name)
		case cur.ID == m.self:
			return name, m.addr, nil
		}
		f = m.rs.raft.LeadershipTransferToServer(cur.ID, cur.Address)
	}
	if err := f.Error(); err != nil {
		return "", "", m.rs.err(err)
	}
	var nl *NotLeaderError
	if err := m.awaitOtherLeader(); !errors.As(err, &nl) {
		return "", "", err
	}
	m.log.Info("leadership transferred", "to", nl.LeaderID)
	return nl.LeaderID, nl.LeaderAddr, nil
}

// untilStop returns a context derived from parent that also ends when the
// node stops, so that a membership call in flight does not hold up Close.
func (m *membership) untilStop(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-m.stopC:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
