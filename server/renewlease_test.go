package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/transport"
)

// fakeRaft is a raftView with a fixed state, term and configuration.
type fakeRaft struct {
	state   raft.RaftState
	term    uint64
	servers []raft.Server
}

func (f *fakeRaft) State() raft.RaftState { return f.state }
func (f *fakeRaft) CurrentTerm() uint64   { return f.term }
func (f *fakeRaft) GetConfiguration() raft.ConfigurationFuture {
	return configFuture{raft.Configuration{Servers: f.servers}}
}

type configFuture struct{ c raft.Configuration }

func (f configFuture) Error() error                      { return nil }
func (f configFuture) Index() uint64                     { return 1 }
func (f configFuture) Configuration() raft.Configuration { return f.c }

// voters returns n voters s1..sn at addresses a1..an.
func voters(n int) []raft.Server {
	var out []raft.Server
	for i := 1; i <= n; i++ {
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("s%d", i)), Address: raft.ServerAddress(fmt.Sprintf("a%d", i))})
	}
	return out
}

// The renewal lease confirms leadership only with a quorum of this term's
// contacts (counting this node) whose oldest member is younger than the
// lease: the condition under which the next leader's extension covers the
// renewal (rule 2).
func TestRenewLeaseQuorum(t *testing.T) {
	now := time.Now()
	const dur = 200 * time.Millisecond
	ago := func(d time.Duration) transport.Contact { return transport.Contact{Term: 5, Sent: now.Add(-d)} }
	tests := []struct {
		name     string
		voters   int
		follower bool
		dur      time.Duration
		contacts map[raft.ServerAddress]transport.Contact
		want     bool
	}{
		{name: "3 voters, one fresh contact", voters: 3, contacts: map[raft.ServerAddress]transport.Contact{"a2": ago(50 * time.Millisecond)}, want: true},
		{name: "3 voters, one fresh and one stale", voters: 3, contacts: map[raft.ServerAddress]transport.Contact{"a2": ago(time.Second), "a3": ago(10 * time.Millisecond)}, want: true},
		{name: "3 voters, only stale contacts", voters: 3, contacts: map[raft.ServerAddress]transport.Contact{"a2": ago(dur), "a3": ago(time.Second)}, want: false},
		{name: "3 voters, no contact", voters: 3, want: false},
		{name: "3 voters, fresh contact of an older term", voters: 3, contacts: map[raft.ServerAddress]transport.Contact{"a2": {Term: 4, Sent: now}}, want: false},
		{name: "5 voters, two fresh", voters: 5, contacts: map[raft.ServerAddress]transport.Contact{"a2": ago(time.Millisecond), "a4": ago(100 * time.Millisecond), "a5": ago(time.Second)}, want: true},
		{name: "5 voters, one fresh", voters: 5, contacts: map[raft.ServerAddress]transport.Contact{"a2": ago(time.Millisecond), "a4": ago(dur + time.Millisecond), "a5": ago(time.Second)}, want: false},
		{name: "a contact from a non-voter does not count", voters: 3, contacts: map[raft.ServerAddress]transport.Contact{"n1": ago(time.Millisecond)}, want: false},
		{name: "single voter", voters: 1, want: true},
		{name: "not the leader", voters: 3, follower: true, contacts: map[raft.ServerAddress]transport.Contact{"a2": ago(time.Millisecond)}, want: false},
		{name: "disabled", voters: 3, dur: -1, contacts: map[raft.ServerAddress]transport.Contact{"a2": ago(time.Millisecond)}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			servers := voters(tc.voters)
			servers = append(servers, raft.Server{Suffrage: raft.Nonvoter, ID: "n1", Address: "n1"})
			state := raft.Leader
			if tc.follower {
				state = raft.Follower
			}
			d := tc.dur
			if d == 0 {
				d = dur
			}
			l := renewLease{dur: d, self: "s1", raft: &fakeRaft{state: state, term: 5, servers: servers},
				contact: func(a raft.ServerAddress) (transport.Contact, bool) { c, ok := tc.contacts[a]; return c, ok }}
			if got := l.confirms(now); got != tc.want {
				t.Fatalf("confirms = %v, want %v", got, tc.want)
			}
		})
	}
}

// A node that is not a voter cannot count itself, so it never confirms.
func TestRenewLeaseSelfNotVoter(t *testing.T) {
	now := time.Now()
	servers := voters(3)
	l := renewLease{dur: time.Second, self: "x", raft: &fakeRaft{state: raft.Leader, term: 1, servers: servers},
		contact: func(raft.ServerAddress) (transport.Contact, bool) { return transport.Contact{Term: 1, Sent: now}, true }}
	if l.confirms(now) {
		t.Fatal("a non-voter confirmed its own leadership")
	}
}

// The renewer measures the renew-lease window on the node's clock
// (Config.Clock), the clock the transport notes its contacts on, not on
// time.Now: a clock fault then reaches the window as it reaches the lessor.
func TestRenewerWindowOnNodeClock(t *testing.T) {
	sent := time.Now().Add(time.Hour) // the node's clock runs an hour ahead
	now := sent
	r := &renewer{
		lease: renewLease{dur: 200 * time.Millisecond, self: "s1", raft: &fakeRaft{state: raft.Leader, term: 5, servers: voters(3)},
			contact: func(a raft.ServerAddress) (transport.Contact, bool) {
				return transport.Contact{Term: 5, Sent: sent}, a == "a2"
			}},
		verifier: &verifier{check: func() error { return nil }, stopped: make(chan struct{})},
		metrics:  newMetrics(nil),
		now:      func() time.Time { return now },
	}
	now = sent.Add(100 * time.Millisecond)
	if r.confirmation() != confirmedRound {
		t.Fatal("a contact 100 ms old on the node's clock did not confirm (the real clock reads it an hour in the future)")
	}
	now = sent.Add(300 * time.Millisecond)
	round := r.confirmation()
	if round == confirmedRound {
		t.Fatal("a contact 300 ms old on the node's clock confirmed a 200 ms window")
	}
	if err := round.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
