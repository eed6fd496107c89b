package transport

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// checker is a Transport with only what the decoders read: the term mark
// and the FSM's command check.
func checker(mark uint64) *Transport {
	t := &Transport{checkCommand: fsm.CheckDecodable}
	t.terms.observe(mark)
	return t
}

// command is a decodable command entry. A checkpoint: its encoder's
// signature is the most stable of fsm's.
func command(t testing.TB) []byte {
	data, err := fsm.EncodeCheckpoint([]lessor.Checkpoint{{ID: 7, Remaining: 5000, Gen: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// goodAppend is a well-formed AppendEntries at term 10 after index 100.
func goodAppend(t testing.TB) *leasepb.RaftAppendEntriesRequest {
	args := testAppendArgs()
	args.Entries[1].Data = command(t)
	return appendEntriesRequestToProto(&args)
}

func goodSnapshot() *leasepb.RaftInstallSnapshotRequest {
	return installSnapshotRequestToProto(&raft.InstallSnapshotRequest{
		RPCHeader:          raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id1"), Addr: []byte("kenny")},
		SnapshotVersion:    raft.SnapshotVersionMax,
		Term:               10,
		LastLogIndex:       100,
		LastLogTerm:        9,
		Configuration:      raft.EncodeConfiguration(testConfiguration),
		ConfigurationIndex: 42,
		Size:               1234,
	})
}

func goodVote() *leasepb.RaftRequestVoteRequest {
	return requestVoteRequestToProto(&raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("id1"), Addr: []byte("kenny")},
		Term:      10, LastLogIndex: 100, LastLogTerm: 9,
	})
}

func wantMalformed(t *testing.T, name string, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("%s: got %v, want ErrMalformed", name, err)
	}
}

func TestDecodeAppendEntries(t *testing.T) {
	if _, err := checker(0).decodeAppendEntriesRequest(goodAppend(t)); err != nil {
		t.Fatalf("well-formed request refused: %v", err)
	}
	undecodable, err := fsm.EncodeBatch([][]byte{command(t), {0xff}})
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(r *leasepb.RaftAppendEntriesRequest){
		"term 2^64-1":          func(r *leasepb.RaftAppendEntriesRequest) { r.Term = math.MaxUint64 },
		"term too far":         func(r *leasepb.RaftAppendEntriesRequest) { r.Term = MaxTermStep + 1 },
		"protocol version":     func(r *leasepb.RaftAppendEntriesRequest) { r.Header.ProtocolVersion = 1 << 40 },
		"negative protocol":    func(r *leasepb.RaftAppendEntriesRequest) { r.Header.ProtocolVersion = -1 },
		"long address":         func(r *leasepb.RaftAppendEntriesRequest) { r.Header.Addr = make([]byte, MaxAddrBytes+1) },
		"long leader":          func(r *leasepb.RaftAppendEntriesRequest) { r.Leader = make([]byte, MaxAddrBytes+1) },
		"prev term above term": func(r *leasepb.RaftAppendEntriesRequest) { r.PrevLogTerm = 11 },
		"commit index 2^64-1":  func(r *leasepb.RaftAppendEntriesRequest) { r.LeaderCommitIndex = math.MaxUint64 },
		"prev index 2^63":      func(r *leasepb.RaftAppendEntriesRequest) { r.PrevLogEntry = 1 << 63 },
		"entries to 2^63":      func(r *leasepb.RaftAppendEntriesRequest) { r.PrevLogEntry = MaxIndex - 2 },
		"index gap":            func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[2].Index = 104 },
		"first index":          func(r *leasepb.RaftAppendEntriesRequest) { r.PrevLogEntry = 99 },
		"entry term above":     func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[2].Term = 11 },
		"entry term falls":     func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[1].Term = 3 },
		"unknown type":         func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[0].Type = 7 },
		"type 256 (wraps to 0)": func(r *leasepb.RaftAppendEntriesRequest) {
			r.Entries[0].Type = 256
		},
		"deprecated add peer": func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[0].Type = uint32(raft.LogAddPeerDeprecated) },
		"bad configuration":   func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[2].Data = []byte{0, 1, 2} },
		"no voter": func(r *leasepb.RaftAppendEntriesRequest) {
			r.Entries[2].Data = raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Nonvoter, ID: "a", Address: "a"}}})
		},
		"duplicate server": func(r *leasepb.RaftAppendEntriesRequest) {
			s := raft.Server{ID: "a", Address: "a"}
			r.Entries[2].Data = raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{s, s}})
		},
		"unknown suffrage": func(r *leasepb.RaftAppendEntriesRequest) {
			r.Entries[2].Data = raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{Suffrage: 9, ID: "a", Address: "a"}}})
		},
		"undecodable command": func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[1].Data = []byte{0xff} },
		"undecodable in batch": func(r *leasepb.RaftAppendEntriesRequest) {
			r.Entries[1].Data = undecodable
		},
		"huge data":        func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[0].Data = make([]byte, MaxEntryBytes+1) },
		"huge extensions":  func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[0].Extensions = make([]byte, MaxEntryBytes+1) },
		"invalid time":     func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[0].AppendedAt = &timestamppb.Timestamp{Nanos: -1} },
		"too many entries": func(r *leasepb.RaftAppendEntriesRequest) { r.Entries = make([]*leasepb.RaftLog, MaxEntries+1) },
	} {
		r := goodAppend(t)
		edit(r)
		_, err := checker(0).decodeAppendEntriesRequest(r)
		wantMalformed(t, name, err)
	}
	// A command of an unknown version, or one that fails validation, is
	// not the transport's to refuse: every replica refuses it on apply.
	r := goodAppend(t)
	r.Entries[1].Data = []byte{0x08, 0x07} // version 7, no body
	if _, err := checker(0).decodeAppendEntriesRequest(r); err != nil {
		t.Errorf("command of an unknown version refused: %v", err)
	}
}

// TestTermRule: a term may be at most MaxTermStep above the highest term
// this node's raft has used, whatever that is.
func TestTermRule(t *testing.T) {
	for _, tc := range []struct {
		mark, term uint64
		ok         bool
	}{
		{0, 1, true},
		{0, MaxTermStep, true},
		{0, MaxTermStep + 1, false},
		{0, math.MaxUint64, false},
		{100, 100 + MaxTermStep, true},
		{100, 101 + MaxTermStep, false},
		{math.MaxUint64 - 5, math.MaxUint64, true},
		{1 << 40, 3, true}, // lower terms are raft's to ignore
	} {
		c := checker(tc.mark)
		vote := goodVote()
		vote.Term = tc.term
		vote.LastLogTerm = 0
		_, errVote := c.decodeRequestVoteRequest(vote)
		ae := goodAppend(t)
		ae.Term = tc.term
		ae.PrevLogTerm, ae.Entries = 0, nil
		_, errAE := c.decodeAppendEntriesRequest(ae)
		var out raft.AppendEntriesResponse
		errAnswer := c.decodeAppendEntriesResponse(&leasepb.RaftAppendEntriesResponse{Term: tc.term}, &out)
		for name, err := range map[string]error{"RequestVote": errVote, "AppendEntries": errAE, "answer": errAnswer} {
			if (err == nil) != tc.ok {
				t.Errorf("mark %d, %s term %d: error %v, want ok=%v", tc.mark, name, tc.term, err, tc.ok)
			}
		}
	}
	// The mark follows the terms raft uses; an accepted answer counts.
	c := checker(0)
	var out raft.RequestVoteResponse
	if err := c.decodeRequestVoteResponse(&leasepb.RaftRequestVoteResponse{Term: MaxTermStep}, &out); err != nil {
		t.Fatal(err)
	}
	if err := c.terms.check("term", 2*MaxTermStep); err != nil {
		t.Errorf("after an answer at %d: %v", uint64(MaxTermStep), err)
	}
}

func TestDecodeInstallSnapshot(t *testing.T) {
	if _, err := checker(0).decodeInstallSnapshotRequest(goodSnapshot()); err != nil {
		t.Fatalf("well-formed request refused: %v", err)
	}
	for name, edit := range map[string]func(r *leasepb.RaftInstallSnapshotRequest){
		"bad configuration":   func(r *leasepb.RaftInstallSnapshotRequest) { r.Configuration = []byte("config") },
		"empty configuration": func(r *leasepb.RaftInstallSnapshotRequest) { r.Configuration = nil },
		"negative size":       func(r *leasepb.RaftInstallSnapshotRequest) { r.Size = -1 },
		"absurd size":         func(r *leasepb.RaftInstallSnapshotRequest) { r.Size = math.MaxInt64 },
		"term 2^64-1":         func(r *leasepb.RaftInstallSnapshotRequest) { r.Term = math.MaxUint64 },
		"version 2":           func(r *leasepb.RaftInstallSnapshotRequest) { r.SnapshotVersion = 2 },
		"version -1":          func(r *leasepb.RaftInstallSnapshotRequest) { r.SnapshotVersion = -1 },
		"last term above":     func(r *leasepb.RaftInstallSnapshotRequest) { r.LastLogTerm = 11 },
		"last index 2^64-1":   func(r *leasepb.RaftInstallSnapshotRequest) { r.LastLogIndex = math.MaxUint64 },
		"config index past":   func(r *leasepb.RaftInstallSnapshotRequest) { r.ConfigurationIndex = 101 },
		"huge peers":          func(r *leasepb.RaftInstallSnapshotRequest) { r.Peers = make([]byte, MaxEntryBytes+1) },
		"long leader":         func(r *leasepb.RaftInstallSnapshotRequest) { r.Leader = make([]byte, MaxAddrBytes+1) },
	} {
		r := goodSnapshot()
		edit(r)
		_, err := checker(0).decodeInstallSnapshotRequest(r)
		wantMalformed(t, name, err)
	}
}

func TestDecodeVotes(t *testing.T) {
	c := checker(0)
	if _, err := c.decodeRequestVoteRequest(goodVote()); err != nil {
		t.Fatalf("well-formed RequestVote refused: %v", err)
	}
	for name, edit := range map[string]func(r *leasepb.RaftRequestVoteRequest){
		"term 2^64-1":     func(r *leasepb.RaftRequestVoteRequest) { r.Term = math.MaxUint64 },
		"last term above": func(r *leasepb.RaftRequestVoteRequest) { r.LastLogTerm = 11 },
		"last index":      func(r *leasepb.RaftRequestVoteRequest) { r.LastLogIndex = math.MaxUint64 },
		"long candidate":  func(r *leasepb.RaftRequestVoteRequest) { r.Candidate = make([]byte, MaxAddrBytes+1) },
		"protocol":        func(r *leasepb.RaftRequestVoteRequest) { r.Header.ProtocolVersion = 4 },
	} {
		r := goodVote()
		edit(r)
		_, err := c.decodeRequestVoteRequest(r)
		wantMalformed(t, name, err)
	}
	pre := &leasepb.RaftRequestPreVoteRequest{Header: goodVote().Header, Term: math.MaxUint64}
	_, err := c.decodeRequestPreVoteRequest(pre)
	wantMalformed(t, "pre-vote term 2^64-1", err)
	_, err = c.decodeTimeoutNowRequest(&leasepb.RaftTimeoutNowRequest{Header: &leasepb.RaftRPCHeader{ProtocolVersion: 99}})
	wantMalformed(t, "TimeoutNow protocol", err)
	var pv raft.RequestPreVoteResponse
	wantMalformed(t, "pre-vote answer", c.decodeRequestPreVoteResponse(&leasepb.RaftRequestPreVoteResponse{Term: math.MaxUint64}, &pv))
	var is raft.InstallSnapshotResponse
	wantMalformed(t, "snapshot answer", c.decodeInstallSnapshotResponse(&leasepb.RaftInstallSnapshotResponse{Term: math.MaxUint64}, &is))
	var ae raft.AppendEntriesResponse
	wantMalformed(t, "append answer", c.decodeAppendEntriesResponse(&leasepb.RaftAppendEntriesResponse{LastLog: math.MaxUint64}, &ae))
	if !reflect.DeepEqual(ae, raft.AppendEntriesResponse{}) {
		t.Errorf("a refused answer was written: %+v", ae)
	}
}

// BenchmarkDecodeAppendEntries measures the receiving side's cost of a full
// AppendEntries of small commands (raft's 64 entries, each a group-commit
// batch of 16 commands of about a grant's size), with and without the checks.
func BenchmarkDecodeAppendEntries(b *testing.B) {
	cmds := make([][]byte, 16)
	for i := range cmds {
		var err error
		if cmds[i], err = fsm.EncodeCheckpoint([]lessor.Checkpoint{{ID: lessor.LeaseID(i + 1), Remaining: 5000, Gen: 1}}); err != nil {
			b.Fatal(err)
		}
	}
	batch, err := fsm.EncodeBatch(cmds)
	if err != nil {
		b.Fatal(err)
	}
	args := raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: 5, PrevLogEntry: 1000, PrevLogTerm: 5}
	for i := range 64 {
		args.Entries = append(args.Entries, &raft.Log{Index: 1001 + uint64(i), Term: 5, Type: raft.LogCommand, Data: batch})
	}
	msg := appendEntriesRequestToProto(&args)
	b.Run("convert", func(b *testing.B) {
		for b.Loop() {
			_ = appendEntriesRequestFromProto(msg)
		}
	})
	b.Run("checked", func(b *testing.B) {
		c := checker(5)
		for b.Loop() {
			if _, err := c.decodeAppendEntriesRequest(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checked-any-command", func(b *testing.B) {
		c := checker(5)
		c.checkCommand = AnyCommand
		for b.Loop() {
			if _, err := c.decodeAppendEntriesRequest(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}
