package transport

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/leasepb"
)

// Validation of what peers send. raft trusts its transport: it panics on
// configuration bytes that do not decode and on log types it does not know,
// leaves holes in its log for entries with gaps in their indexes, and adopts
// any higher term, persistently. A peer's message therefore reaches raft only
// after the checks below; a refused request is answered InvalidArgument, a
// refused answer fails the outgoing RPC. DESIGN.md explains the rules.

// ErrMalformed is wrapped by the error of every refused message: a request
// from a peer (answered with codes.InvalidArgument) or a peer's answer to
// one of this node's RPCs.
var ErrMalformed = errors.New("transport: malformed raft message")

const (
	// MaxTermStep is how far above the highest term this node's raft has
	// used a peer's term may be. Terms grow by one per election, so no
	// legitimate message comes near it; a forged term 2^64-1 would leave
	// no room for a next election (the term would overflow), and any fixed
	// ceiling would do the same once the cluster sat just below it.
	MaxTermStep = 1 << 32
	// MaxIndex is the largest log index accepted (2^63-1): at a million
	// entries a second a log reaches it after 290,000 years, and raft's
	// index+1 arithmetic never overflows below it.
	MaxIndex = math.MaxInt64
	// MaxEntries is the most entries one AppendEntries may carry: raft's
	// own ceiling on Config.MaxAppendEntries.
	MaxEntries = 1024
	// MaxEntryBytes bounds an entry's data and extensions, and the
	// configuration and peers bytes of an InstallSnapshot. The gRPC
	// receive limit bounds the whole message on top of it.
	MaxEntryBytes = 16 << 20
	// MaxAddrBytes bounds a server ID or address.
	MaxAddrBytes = 4096
	// MaxSnapshotSize bounds the declared size of a snapshot (1 TiB).
	MaxSnapshotSize = 1 << 40
)

// termMark is the highest term this node's raft is known to have used: in
// the requests it sends, in its answers to peers, and in peers' answers it
// was given (raft adopts those). It starts at zero, so until raft has spoken
// a peer's term may be at most MaxTermStep.
type termMark struct{ v atomic.Uint64 }

func (m *termMark) observe(term uint64) {
	for {
		cur := m.v.Load()
		if term <= cur || m.v.CompareAndSwap(cur, term) {
			return
		}
	}
}

// check refuses a term more than MaxTermStep above the mark.
func (m *termMark) check(what string, term uint64) error {
	mark := m.v.Load()
	if term > mark && term-mark > MaxTermStep {
		return malformed("%s %d is more than %d above this node's term %d", what, term, uint64(MaxTermStep), mark)
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func checkLen(what string, b []byte, max int) error {
	if len(b) > max {
		return malformed("%s of %d bytes (at most %d)", what, len(b), max)
	}
	return nil
}

func checkIndex(what string, index uint64) error {
	if index > MaxIndex {
		return malformed("%s %d above %d", what, index, uint64(MaxIndex))
	}
	return nil
}

// checkHeader checks a request's header: raft would answer an unknown
// protocol version with an error itself, but the conversion to raft's int
// must not wrap first.
func checkHeader(h *leasepb.RaftRPCHeader) error {
	if v := h.GetProtocolVersion(); v < int64(raft.ProtocolVersionMin) || v > int64(raft.ProtocolVersionMax) {
		return malformed("protocol version %d (this raft speaks %d to %d)", v, raft.ProtocolVersionMin, raft.ProtocolVersionMax)
	}
	return checkAnswerHeader(h)
}

// checkAnswerHeader checks the header of a peer's answer, whose version raft
// does not read.
func checkAnswerHeader(h *leasepb.RaftRPCHeader) error {
	if err := checkLen("header ID", h.GetId(), MaxAddrBytes); err != nil {
		return err
	}
	return checkLen("header address", h.GetAddr(), MaxAddrBytes)
}

// checkConfiguration decodes configuration bytes as raft will and applies the
// rules raft checks before it logs a configuration (its checkConfiguration):
// every legitimate configuration passed them on the leader.
func checkConfiguration(what string, data []byte) error {
	if err := checkLen(what, data, MaxEntryBytes); err != nil {
		return err
	}
	conf, err := decodeConfiguration(data)
	if err != nil {
		return malformed("%s: %v", what, err)
	}
	ids := make(map[raft.ServerID]bool, len(conf.Servers))
	addrs := make(map[raft.ServerAddress]bool, len(conf.Servers))
	voters := 0
	for _, s := range conf.Servers {
		switch {
		case s.ID == "" || s.Address == "":
			return malformed("%s: a server without an ID or address", what)
		case len(s.ID) > MaxAddrBytes || len(s.Address) > MaxAddrBytes:
			return malformed("%s: a server ID or address over %d bytes", what, MaxAddrBytes)
		case ids[s.ID] || addrs[s.Address]:
			return malformed("%s: server %q or address %q twice", what, s.ID, s.Address)
		case s.Suffrage != raft.Voter && s.Suffrage != raft.Nonvoter && s.Suffrage != raft.Staging:
			return malformed("%s: server %q has unknown suffrage %d", what, s.ID, s.Suffrage)
		}
		ids[s.ID], addrs[s.Address] = true, true
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters == 0 {
		return malformed("%s: no voter", what)
	}
	return nil
}

// decodeConfiguration is raft.DecodeConfiguration, which reports a decoding
// error by panicking, with the panic turned back into an error. The panic is
// raft's documented way to fail here, raised before anything is shared, so
// recovering from it leaves nothing half done.
func decodeConfiguration(data []byte) (conf raft.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return raft.DecodeConfiguration(data), nil
}

// checkEntries checks the entries of an AppendEntries: what raft's log
// needs (consecutive indexes after PrevLogEntry, terms that never decrease
// and never pass the request's), types raft knows (it panics applying any
// other), configurations that decode, and commands the FSM can decode.
func (t *Transport) checkEntries(r *leasepb.RaftAppendEntriesRequest) error {
	entries := r.GetEntries()
	if len(entries) > MaxEntries {
		return malformed("%d entries (at most %d)", len(entries), MaxEntries)
	}
	if len(entries) > 0 && r.GetPrevLogEntry() > MaxIndex-uint64(len(entries)) {
		return malformed("entries past index %d", uint64(MaxIndex))
	}
	prevTerm := r.GetPrevLogTerm()
	for i, e := range entries {
		if want := r.GetPrevLogEntry() + 1 + uint64(i); e.GetIndex() != want {
			return malformed("entry %d has index %d, want %d", i, e.GetIndex(), want)
		}
		if e.GetTerm() < prevTerm || e.GetTerm() > r.GetTerm() {
			return malformed("entry %d has term %d (previous %d, request %d)", i, e.GetTerm(), prevTerm, r.GetTerm())
		}
		prevTerm = e.GetTerm()
		if err := checkLen("entry data", e.GetData(), MaxEntryBytes); err != nil {
			return err
		}
		if err := checkLen("entry extensions", e.GetExtensions(), MaxEntryBytes); err != nil {
			return err
		}
		if ts := e.GetAppendedAt(); ts != nil {
			if err := ts.CheckValid(); err != nil {
				return malformed("entry %d: %v", i, err)
			}
		}
		switch typ := e.GetType(); typ {
		case uint32(raft.LogNoop), uint32(raft.LogBarrier):
		case uint32(raft.LogConfiguration):
			if err := checkConfiguration(fmt.Sprintf("entry %d configuration", i), e.GetData()); err != nil {
				return err
			}
		case uint32(raft.LogCommand):
			if err := t.checkCommand(e.GetData()); err != nil {
				return malformed("entry %d at index %d: %v", i, e.GetIndex(), err)
			}
		default:
			// Including LogAddPeerDeprecated and LogRemovePeerDeprecated,
			// which only raft protocol versions 0 and 1 write.
			return malformed("entry %d has log type %d", i, typ)
		}
	}
	return nil
}
