package transport

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Contact is the newest proof that a peer accepted this node's leadership:
// the send time, on this node's monotonic clock (Config.Now), of the latest AppendEntries
// (heartbeat, unary or pipelined) that the peer answered in the request's own
// term.
//
// Why it proves something: a peer that answers a term-T AppendEntries with
// term T has not voted in any later term by the time it read its term, which
// was after Sent. Raft persists votes and terms, so this holds across the
// peer's restarts too. A leader of a later term needs a vote from a quorum
// that overlaps every quorum of such contacts, so it is elected after the
// contacts' send times (see server/DESIGN.md, "Renewals").
type Contact struct {
	Term uint64
	Sent time.Time
}

// contacts holds the newest Contact per peer address.
type contacts struct {
	mu     sync.Mutex // guards byAddr
	byAddr map[raft.ServerAddress]Contact
}

// record notes that target answered a request of term sent at sent. Only a
// response in the request's own term counts; a higher term means the peer
// has moved on and proves nothing.
func (c *contacts) record(target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, sent time.Time) {
	if resp.Term != req.Term {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byAddr == nil {
		c.byAddr = make(map[raft.ServerAddress]Contact)
	}
	old, ok := c.byAddr[target]
	if !ok || req.Term > old.Term || (req.Term == old.Term && sent.After(old.Sent)) {
		c.byAddr[target] = Contact{Term: req.Term, Sent: sent}
	}
}

// LastContact returns the newest Contact with target, and false if there
// has been none.
func (t *Transport) LastContact(target raft.ServerAddress) (Contact, bool) {
	t.contacts.mu.Lock()
	defer t.contacts.mu.Unlock()
	c, ok := t.contacts.byAddr[target]
	return c, ok
}
