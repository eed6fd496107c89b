package transport

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// answerTerm answers every AppendEntries with the given term.
func answerTerm(term uint64) func(int, raft.RPC) {
	return func(_ int, rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: term, Success: true}, nil)
	}
}

// A contact proves leadership only when the peer answered in the request's
// own term, and it carries the send time, which is before the peer read its
// term: what server's renewal lease relies on.
func TestContactsUnary(t *testing.T) {
	leader, peer := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	target := peer.trans.LocalAddr()
	if _, ok := leader.trans.LastContact(target); ok {
		t.Fatal("contact before any request")
	}
	args := raft.AppendEntriesRequest{Term: 7}

	// A peer in a later term has moved on: no contact.
	wait := respond(t, peer.trans, 1, answerTerm(8))
	if err := leader.trans.AppendEntries("p", target, &args, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	wait()
	if c, ok := leader.trans.LastContact(target); ok {
		t.Fatalf("a higher-term answer was recorded as contact %+v", c)
	}

	before := time.Now()
	wait = respond(t, peer.trans, 1, answerTerm(7))
	if err := leader.trans.AppendEntries("p", target, &args, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	wait()
	c, ok := leader.trans.LastContact(target)
	if !ok || c.Term != 7 {
		t.Fatalf("contact = %+v, %v; want term 7", c, ok)
	}
	if c.Sent.Before(before) || c.Sent.After(after) {
		t.Fatalf("contact sent at %v, outside the call [%v, %v]", c.Sent, before, after)
	}

	// A later higher-term answer neither records nor erases anything; a
	// failed RPC records nothing either.
	wait = respond(t, peer.trans, 1, answerTerm(9))
	if err := leader.trans.AppendEntries("p", target, &args, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	wait()
	wait = respond(t, peer.trans, 1, func(_ int, rpc raft.RPC) { rpc.Respond(nil, raft.ErrNotLeader) })
	if err := leader.trans.AppendEntries("p", target, &args, new(raft.AppendEntriesResponse)); err == nil {
		t.Fatal("remote error not returned")
	}
	wait()
	if got, _ := leader.trans.LastContact(target); got != c {
		t.Fatalf("contact changed to %+v, want %+v", got, c)
	}
}

func TestContactsPipeline(t *testing.T) { forEachWire(t, testContactsPipeline) }

func testContactsPipeline(t *testing.T, newNode func(t *testing.T, addr string, timeout time.Duration) *node) {
	leader, peer := newNode(t, "", testTimeout), newNode(t, "", testTimeout)
	target := peer.trans.LocalAddr()
	const count = 5
	wait := respond(t, peer.trans, count, func(i int, rpc raft.RPC) {
		term := uint64(3)
		if i == count-1 {
			term = 4 // the last answer is from a later term
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: term, Success: true}, nil)
	})
	pipe, err := leader.trans.AppendEntriesPipeline("p", target)
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	var starts []time.Time
	for range count {
		f, err := pipe.AppendEntries(&raft.AppendEntriesRequest{Term: 3}, new(raft.AppendEntriesResponse))
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, f.Start())
	}
	for range count {
		select {
		case f := <-pipe.Consumer():
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("timed out waiting for a future")
		}
	}
	wait()
	c, ok := leader.trans.LastContact(target)
	want := Contact{Term: 3, Sent: starts[count-2]} // the newest answered in its own term
	if !ok || c != want {
		t.Fatalf("contact = %+v, %v; want %+v", c, ok, want)
	}
}

// Config.Now is the clock of the contacts' send times, so that the node's
// renew-lease window and its contacts are read on one (possibly skewed)
// clock; raft's own start times stay real.
func TestContactsOnConfiguredClock(t *testing.T) {
	var clock atomic.Pointer[time.Time]
	skewed := time.Now().Add(time.Hour)
	clock.Store(&skewed)
	leader := newNodeConfig(t, "", Config{Timeout: testTimeout, CheckCommand: AnyCommand, Now: func() time.Time { return *clock.Load() }})
	peer := newNode(t, "", testTimeout)
	target := peer.trans.LocalAddr()
	wait := respond(t, peer.trans, 2, answerTerm(5))
	if err := leader.trans.AppendEntries("p", target, &raft.AppendEntriesRequest{Term: 5}, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	if c, ok := leader.trans.LastContact(target); !ok || !c.Sent.Equal(skewed) {
		t.Fatalf("unary contact = %+v, %v; want sent at the configured clock's %v", c, ok, skewed)
	}
	later := skewed.Add(time.Minute)
	clock.Store(&later)
	pipe, err := leader.trans.AppendEntriesPipeline("p", target)
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	f, err := pipe.AppendEntries(&raft.AppendEntriesRequest{Term: 5}, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatal(err)
	}
	if err := (<-pipe.Consumer()).Error(); err != nil {
		t.Fatal(err)
	}
	wait()
	if f.Start().After(time.Now()) {
		t.Errorf("raft's start time %v is on the configured clock, want the real one", f.Start())
	}
	if c, ok := leader.trans.LastContact(target); !ok || !c.Sent.Equal(later) {
		t.Fatalf("pipelined contact = %+v, %v; want sent at %v", c, ok, later)
	}
}
