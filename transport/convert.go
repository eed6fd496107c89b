package transport

import (
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leasecluster/leasecluster/leasepb"
)

// Conversions between raft's RPC structs and their leasepb mirrors. Every
// field is carried, deprecated ones included: raft still fills Leader and
// reads it as a fallback (the heartbeat check below does too), and a
// conversion that dropped a field would change what raft sees.

func headerToProto(h raft.RPCHeader) *leasepb.RaftRPCHeader {
	return &leasepb.RaftRPCHeader{
		ProtocolVersion: int64(h.ProtocolVersion),
		Id:              h.ID,
		Addr:            h.Addr,
	}
}

func headerFromProto(h *leasepb.RaftRPCHeader) raft.RPCHeader {
	return raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersion(h.GetProtocolVersion()),
		ID:              h.GetId(),
		Addr:            h.GetAddr(),
	}
}

func logToProto(l *raft.Log) *leasepb.RaftLog {
	out := &leasepb.RaftLog{
		Index:      l.Index,
		Term:       l.Term,
		Type:       uint32(l.Type),
		Data:       l.Data,
		Extensions: l.Extensions,
	}
	// The zero time stays unset so that it decodes to the zero time again
	// (a Timestamp of year 1 would decode to an equal but not identical value).
	if !l.AppendedAt.IsZero() {
		out.AppendedAt = timestamppb.New(l.AppendedAt)
	}
	return out
}

func logFromProto(l *leasepb.RaftLog) *raft.Log {
	out := &raft.Log{
		Index:      l.GetIndex(),
		Term:       l.GetTerm(),
		Type:       raft.LogType(l.GetType()),
		Data:       l.GetData(),
		Extensions: l.GetExtensions(),
	}
	if ts := l.GetAppendedAt(); ts != nil {
		out.AppendedAt = ts.AsTime()
	}
	return out
}

func appendEntriesRequestToProto(r *raft.AppendEntriesRequest) *leasepb.RaftAppendEntriesRequest {
	out := &leasepb.RaftAppendEntriesRequest{
		Header:            headerToProto(r.RPCHeader),
		Term:              r.Term,
		Leader:            r.Leader,
		PrevLogEntry:      r.PrevLogEntry,
		PrevLogTerm:       r.PrevLogTerm,
		LeaderCommitIndex: r.LeaderCommitIndex,
	}
	if len(r.Entries) > 0 {
		out.Entries = make([]*leasepb.RaftLog, len(r.Entries))
		for i, e := range r.Entries {
			out.Entries[i] = logToProto(e)
		}
	}
	return out
}

func appendEntriesRequestFromProto(r *leasepb.RaftAppendEntriesRequest) *raft.AppendEntriesRequest {
	out := &raft.AppendEntriesRequest{
		RPCHeader:         headerFromProto(r.GetHeader()),
		Term:              r.GetTerm(),
		Leader:            r.GetLeader(),
		PrevLogEntry:      r.GetPrevLogEntry(),
		PrevLogTerm:       r.GetPrevLogTerm(),
		LeaderCommitIndex: r.GetLeaderCommitIndex(),
	}
	if entries := r.GetEntries(); len(entries) > 0 {
		out.Entries = make([]*raft.Log, len(entries))
		for i, e := range entries {
			out.Entries[i] = logFromProto(e)
		}
	}
	return out
}

func appendEntriesResponseToProto(r *raft.AppendEntriesResponse) *leasepb.RaftAppendEntriesResponse {
	return &leasepb.RaftAppendEntriesResponse{
		Header:         headerToProto(r.RPCHeader),
		Term:           r.Term,
		LastLog:        r.LastLog,
		Success:        r.Success,
		NoRetryBackoff: r.NoRetryBackoff,
	}
}

func appendEntriesResponseFromProto(r *leasepb.RaftAppendEntriesResponse, out *raft.AppendEntriesResponse) {
	*out = raft.AppendEntriesResponse{
		RPCHeader:      headerFromProto(r.GetHeader()),
		Term:           r.GetTerm(),
		LastLog:        r.GetLastLog(),
		Success:        r.GetSuccess(),
		NoRetryBackoff: r.GetNoRetryBackoff(),
	}
}

func requestVoteRequestToProto(r *raft.RequestVoteRequest) *leasepb.RaftRequestVoteRequest {
	return &leasepb.RaftRequestVoteRequest{
		Header:             headerToProto(r.RPCHeader),
		Term:               r.Term,
		Candidate:          r.Candidate,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

func requestVoteRequestFromProto(r *leasepb.RaftRequestVoteRequest) *raft.RequestVoteRequest {
	return &raft.RequestVoteRequest{
		RPCHeader:          headerFromProto(r.GetHeader()),
		Term:               r.GetTerm(),
		Candidate:          r.GetCandidate(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		LeadershipTransfer: r.GetLeadershipTransfer(),
	}
}

func requestVoteResponseToProto(r *raft.RequestVoteResponse) *leasepb.RaftRequestVoteResponse {
	return &leasepb.RaftRequestVoteResponse{
		Header:  headerToProto(r.RPCHeader),
		Term:    r.Term,
		Peers:   r.Peers,
		Granted: r.Granted,
	}
}

func requestVoteResponseFromProto(r *leasepb.RaftRequestVoteResponse, out *raft.RequestVoteResponse) {
	*out = raft.RequestVoteResponse{
		RPCHeader: headerFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Peers:     r.GetPeers(),
		Granted:   r.GetGranted(),
	}
}

func requestPreVoteRequestToProto(r *raft.RequestPreVoteRequest) *leasepb.RaftRequestPreVoteRequest {
	return &leasepb.RaftRequestPreVoteRequest{
		Header:       headerToProto(r.RPCHeader),
		Term:         r.Term,
		LastLogIndex: r.LastLogIndex,
		LastLogTerm:  r.LastLogTerm,
	}
}

func requestPreVoteRequestFromProto(r *leasepb.RaftRequestPreVoteRequest) *raft.RequestPreVoteRequest {
	return &raft.RequestPreVoteRequest{
		RPCHeader:    headerFromProto(r.GetHeader()),
		Term:         r.GetTerm(),
		LastLogIndex: r.GetLastLogIndex(),
		LastLogTerm:  r.GetLastLogTerm(),
	}
}

func requestPreVoteResponseToProto(r *raft.RequestPreVoteResponse) *leasepb.RaftRequestPreVoteResponse {
	return &leasepb.RaftRequestPreVoteResponse{
		Header:  headerToProto(r.RPCHeader),
		Term:    r.Term,
		Granted: r.Granted,
	}
}

func requestPreVoteResponseFromProto(r *leasepb.RaftRequestPreVoteResponse, out *raft.RequestPreVoteResponse) {
	*out = raft.RequestPreVoteResponse{
		RPCHeader: headerFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Granted:   r.GetGranted(),
	}
}

func timeoutNowRequestToProto(r *raft.TimeoutNowRequest) *leasepb.RaftTimeoutNowRequest {
	return &leasepb.RaftTimeoutNowRequest{Header: headerToProto(r.RPCHeader)}
}

func timeoutNowRequestFromProto(r *leasepb.RaftTimeoutNowRequest) *raft.TimeoutNowRequest {
	return &raft.TimeoutNowRequest{RPCHeader: headerFromProto(r.GetHeader())}
}

func timeoutNowResponseToProto(r *raft.TimeoutNowResponse) *leasepb.RaftTimeoutNowResponse {
	return &leasepb.RaftTimeoutNowResponse{Header: headerToProto(r.RPCHeader)}
}

func timeoutNowResponseFromProto(r *leasepb.RaftTimeoutNowResponse, out *raft.TimeoutNowResponse) {
	*out = raft.TimeoutNowResponse{RPCHeader: headerFromProto(r.GetHeader())}
}

func installSnapshotRequestToProto(r *raft.InstallSnapshotRequest) *leasepb.RaftInstallSnapshotRequest {
	return &leasepb.RaftInstallSnapshotRequest{
		Header:             headerToProto(r.RPCHeader),
		SnapshotVersion:    int64(r.SnapshotVersion),
		Term:               r.Term,
		Leader:             r.Leader,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		Peers:              r.Peers,
		Configuration:      r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex,
		Size:               r.Size,
	}
}

func installSnapshotRequestFromProto(r *leasepb.RaftInstallSnapshotRequest) *raft.InstallSnapshotRequest {
	return &raft.InstallSnapshotRequest{
		RPCHeader:          headerFromProto(r.GetHeader()),
		SnapshotVersion:    raft.SnapshotVersion(r.GetSnapshotVersion()),
		Term:               r.GetTerm(),
		Leader:             r.GetLeader(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		Peers:              r.GetPeers(),
		Configuration:      r.GetConfiguration(),
		ConfigurationIndex: r.GetConfigurationIndex(),
		Size:               r.GetSize(),
	}
}

func installSnapshotResponseToProto(r *raft.InstallSnapshotResponse) *leasepb.RaftInstallSnapshotResponse {
	return &leasepb.RaftInstallSnapshotResponse{
		Header:  headerToProto(r.RPCHeader),
		Term:    r.Term,
		Success: r.Success,
	}
}

func installSnapshotResponseFromProto(r *leasepb.RaftInstallSnapshotResponse, out *raft.InstallSnapshotResponse) {
	*out = raft.InstallSnapshotResponse{
		RPCHeader: headerFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Success:   r.GetSuccess(),
	}
}

// isHeartbeat reports whether an AppendEntries request is a bare heartbeat,
// with the same test as raft's NetworkTransport, so that raft's heartbeat
// fast path sees exactly the requests it expects.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leaderAddr := req.RPCHeader.Addr
	if len(leaderAddr) == 0 {
		leaderAddr = req.Leader
	}
	return req.Term != 0 && leaderAddr != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}
