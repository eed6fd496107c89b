package transport

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/leasepb"
)

// The fuzz targets feed wire bytes, as the gRPC server receives them, to the
// decoders with a term mark of the fuzzer's choice. A decoder must never
// panic; it refuses with ErrMalformed or returns a request that raft can take
// (configurations decode, commands decode, types known) and that survives a
// round trip through the wire unchanged.

func marshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func refusedOK(t *testing.T, err error) bool {
	t.Helper()
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("refused without ErrMalformed: %v", err)
	}
	return err != nil
}

func FuzzAppendEntries(f *testing.F) {
	good := goodAppend(f)
	f.Add(uint64(0), marshal(f, good))
	f.Add(uint64(9), marshal(f, appendEntriesRequestToProto(&raft.AppendEntriesRequest{Term: 3, RPCHeader: raft.RPCHeader{Addr: []byte("a")}})))
	for _, edit := range []func(r *leasepb.RaftAppendEntriesRequest){
		func(r *leasepb.RaftAppendEntriesRequest) { r.Term = math.MaxUint64 },
		func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[2].Data = []byte{0x81, 0xa7} },
		func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[1].Data = []byte{0xff} },
		func(r *leasepb.RaftAppendEntriesRequest) { r.Entries[0].Type = 256 },
		func(r *leasepb.RaftAppendEntriesRequest) {
			r.Entries[0].AppendedAt = &timestamppb.Timestamp{Seconds: -1 << 62}
		},
	} {
		r := proto.Clone(good).(*leasepb.RaftAppendEntriesRequest)
		edit(r)
		f.Add(uint64(0), marshal(f, r))
	}
	f.Fuzz(func(t *testing.T, mark uint64, data []byte) {
		msg := new(leasepb.RaftAppendEntriesRequest)
		if proto.Unmarshal(data, msg) != nil {
			return
		}
		c := checker(mark)
		req, err := c.decodeAppendEntriesRequest(msg)
		if refusedOK(t, err) {
			return
		}
		for _, e := range req.Entries {
			switch e.Type {
			case raft.LogConfiguration:
				_ = raft.DecodeConfiguration(e.Data) // must not panic
			case raft.LogCommand:
				if err := fsm.CheckDecodable(e.Data); err != nil {
					t.Fatalf("accepted an undecodable command: %v", err)
				}
			}
		}
		// The round trip: what the transport would send for req decodes
		// to req again.
		again, err := c.decodeAppendEntriesRequest(wire(t, appendEntriesRequestToProto(req), new(leasepb.RaftAppendEntriesRequest)))
		if err != nil {
			t.Fatalf("re-encoded request refused: %v", err)
		}
		sameAppend(t, req, again)
		// And req carries what the peer sent.
		if req.Term != msg.GetTerm() || req.PrevLogEntry != msg.GetPrevLogEntry() || len(req.Entries) != len(msg.GetEntries()) {
			t.Fatalf("conversion changed the request: %+v from %v", req, msg)
		}
		for i, e := range msg.GetEntries() {
			got := req.Entries[i]
			if uint32(got.Type) != e.GetType() || got.Index != e.GetIndex() || got.Term != e.GetTerm() || !bytes.Equal(got.Data, e.GetData()) {
				t.Fatalf("entry %d changed: %+v from %v", i, got, e)
			}
		}
	})
}

// wire marshals m and unmarshals the bytes into into.
func wire[M proto.Message](t *testing.T, m proto.Message, into M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return into
}

// sameAppend compares two requests field by field (nil and empty bytes are
// the same on the wire).
func sameAppend(t *testing.T, a, b *raft.AppendEntriesRequest) {
	t.Helper()
	if !proto.Equal(appendEntriesRequestToProto(a), appendEntriesRequestToProto(b)) {
		t.Fatalf("round trip changed the request:\n%+v\n%+v", a, b)
	}
	for i := range a.Entries {
		if !a.Entries[i].AppendedAt.Equal(b.Entries[i].AppendedAt) {
			t.Fatalf("round trip changed entry %d's time: %v, %v", i, a.Entries[i].AppendedAt, b.Entries[i].AppendedAt)
		}
	}
}

func FuzzInstallSnapshotRequest(f *testing.F) {
	good := goodSnapshot()
	f.Add(uint64(0), marshal(f, good))
	for _, edit := range []func(r *leasepb.RaftInstallSnapshotRequest){
		func(r *leasepb.RaftInstallSnapshotRequest) { r.Configuration = []byte("config") },
		func(r *leasepb.RaftInstallSnapshotRequest) {
			r.Configuration = []byte{0x81, 0xa7, 'S', 'e', 'r', 'v', 'e', 'r', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}
		},
		func(r *leasepb.RaftInstallSnapshotRequest) { r.Size = -1 },
		func(r *leasepb.RaftInstallSnapshotRequest) { r.Term = math.MaxUint64 },
		func(r *leasepb.RaftInstallSnapshotRequest) { r.SnapshotVersion = 0; r.Configuration = nil },
	} {
		r := proto.Clone(good).(*leasepb.RaftInstallSnapshotRequest)
		edit(r)
		f.Add(uint64(0), marshal(f, r))
	}
	f.Fuzz(func(t *testing.T, mark uint64, data []byte) {
		msg := new(leasepb.RaftInstallSnapshotRequest)
		if proto.Unmarshal(data, msg) != nil {
			return
		}
		c := checker(mark)
		req, err := c.decodeInstallSnapshotRequest(msg)
		if refusedOK(t, err) {
			return
		}
		if req.SnapshotVersion > 0 {
			_ = raft.DecodeConfiguration(req.Configuration) // must not panic
		}
		if req.Size < 0 {
			t.Fatalf("accepted size %d", req.Size)
		}
		again, err := c.decodeInstallSnapshotRequest(wire(t, installSnapshotRequestToProto(req), new(leasepb.RaftInstallSnapshotRequest)))
		if err != nil {
			t.Fatalf("re-encoded request refused: %v", err)
		}
		if !proto.Equal(installSnapshotRequestToProto(req), installSnapshotRequestToProto(again)) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, again)
		}
		if req.Term != msg.GetTerm() || req.Size != msg.GetSize() || !bytes.Equal(req.Configuration, msg.GetConfiguration()) {
			t.Fatalf("conversion changed the request: %+v from %v", req, msg)
		}
	})
}

// FuzzRequestVote decodes the bytes as each of the small requests
// (RequestVote, RequestPreVote, TimeoutNow) and as each answer a peer sends
// back.
func FuzzRequestVote(f *testing.F) {
	f.Add(uint64(0), marshal(f, goodVote()))
	bad := goodVote()
	bad.Term, bad.LeadershipTransfer = math.MaxUint64, true
	f.Add(uint64(0), marshal(f, bad))
	f.Add(uint64(1<<40), marshal(f, &leasepb.RaftAppendEntriesResponse{Term: 1<<40 + 1, LastLog: 7, Success: true}))
	f.Fuzz(func(t *testing.T, mark uint64, data []byte) {
		c := checker(mark)
		if msg := new(leasepb.RaftRequestVoteRequest); proto.Unmarshal(data, msg) == nil {
			if req, err := c.decodeRequestVoteRequest(msg); !refusedOK(t, err) {
				again, err := c.decodeRequestVoteRequest(wire(t, requestVoteRequestToProto(req), new(leasepb.RaftRequestVoteRequest)))
				if err != nil || !proto.Equal(requestVoteRequestToProto(req), requestVoteRequestToProto(again)) {
					t.Fatalf("round trip: %v\n%+v\n%+v", err, req, again)
				}
				if req.Term != msg.GetTerm() || req.LeadershipTransfer != msg.GetLeadershipTransfer() {
					t.Fatalf("conversion changed the request: %+v from %v", req, msg)
				}
			}
		}
		if msg := new(leasepb.RaftRequestPreVoteRequest); proto.Unmarshal(data, msg) == nil {
			if req, err := c.decodeRequestPreVoteRequest(msg); !refusedOK(t, err) {
				again, err := c.decodeRequestPreVoteRequest(wire(t, requestPreVoteRequestToProto(req), new(leasepb.RaftRequestPreVoteRequest)))
				if err != nil || !proto.Equal(requestPreVoteRequestToProto(req), requestPreVoteRequestToProto(again)) {
					t.Fatalf("round trip: %v\n%+v\n%+v", err, req, again)
				}
			}
		}
		if msg := new(leasepb.RaftTimeoutNowRequest); proto.Unmarshal(data, msg) == nil {
			_, err := c.decodeTimeoutNowRequest(msg)
			refusedOK(t, err)
		}
		// Answers: they must decode or be refused, and an accepted term
		// raises the mark no further than it allowed.
		answers := []func() error{
			func() error {
				m := new(leasepb.RaftAppendEntriesResponse)
				if proto.Unmarshal(data, m) != nil {
					return nil
				}
				return c.decodeAppendEntriesResponse(m, new(raft.AppendEntriesResponse))
			},
			func() error {
				m := new(leasepb.RaftRequestVoteResponse)
				if proto.Unmarshal(data, m) != nil {
					return nil
				}
				return c.decodeRequestVoteResponse(m, new(raft.RequestVoteResponse))
			},
			func() error {
				m := new(leasepb.RaftInstallSnapshotResponse)
				if proto.Unmarshal(data, m) != nil {
					return nil
				}
				return c.decodeInstallSnapshotResponse(m, new(raft.InstallSnapshotResponse))
			},
		}
		for _, answer := range answers {
			before := c.terms.v.Load()
			refusedOK(t, answer())
			if after := c.terms.v.Load(); after > before && after-before > MaxTermStep {
				t.Fatalf("an answer moved the mark from %d to %d", before, after)
			}
		}
	})
}
