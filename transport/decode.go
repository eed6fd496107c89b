package transport

import (
	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/leasepb"
)

// The decoders: every message a peer sends, request or answer, is checked
// (validate.go) before it is converted for raft. The conversions themselves
// (convert.go) check nothing.

func (t *Transport) decodeAppendEntriesRequest(r *leasepb.RaftAppendEntriesRequest) (*raft.AppendEntriesRequest, error) {
	if err := checkHeader(r.GetHeader()); err != nil {
		return nil, err
	}
	if err := t.terms.check("term", r.GetTerm()); err != nil {
		return nil, err
	}
	if err := checkLen("leader address", r.GetLeader(), MaxAddrBytes); err != nil {
		return nil, err
	}
	if r.GetPrevLogTerm() > r.GetTerm() {
		return nil, malformed("previous log term %d above the request's term %d", r.GetPrevLogTerm(), r.GetTerm())
	}
	if err := checkIndex("previous log index", r.GetPrevLogEntry()); err != nil {
		return nil, err
	}
	if err := checkIndex("leader commit index", r.GetLeaderCommitIndex()); err != nil {
		return nil, err
	}
	if err := t.checkEntries(r); err != nil {
		return nil, err
	}
	return appendEntriesRequestFromProto(r), nil
}

func (t *Transport) decodeAppendEntriesResponse(r *leasepb.RaftAppendEntriesResponse, out *raft.AppendEntriesResponse) error {
	if err := checkAnswerHeader(r.GetHeader()); err != nil {
		return err
	}
	if err := t.terms.check("answer's term", r.GetTerm()); err != nil {
		return err
	}
	if err := checkIndex("answer's last log index", r.GetLastLog()); err != nil {
		return err
	}
	appendEntriesResponseFromProto(r, out)
	t.terms.observe(out.Term)
	return nil
}

func (t *Transport) decodeRequestVoteRequest(r *leasepb.RaftRequestVoteRequest) (*raft.RequestVoteRequest, error) {
	if err := checkHeader(r.GetHeader()); err != nil {
		return nil, err
	}
	if err := t.checkCandidacy(r.GetTerm(), r.GetLastLogTerm(), r.GetLastLogIndex()); err != nil {
		return nil, err
	}
	if err := checkLen("candidate address", r.GetCandidate(), MaxAddrBytes); err != nil {
		return nil, err
	}
	return requestVoteRequestFromProto(r), nil
}

// checkCandidacy checks the terms and index of a (pre-)vote request: a
// candidate's last entry is from its current term at the latest.
func (t *Transport) checkCandidacy(term, lastLogTerm, lastLogIndex uint64) error {
	if err := t.terms.check("term", term); err != nil {
		return err
	}
	if lastLogTerm > term {
		return malformed("last log term %d above the request's term %d", lastLogTerm, term)
	}
	return checkIndex("last log index", lastLogIndex)
}

func (t *Transport) decodeRequestVoteResponse(r *leasepb.RaftRequestVoteResponse, out *raft.RequestVoteResponse) error {
	if err := checkAnswerHeader(r.GetHeader()); err != nil {
		return err
	}
	if err := t.terms.check("answer's term", r.GetTerm()); err != nil {
		return err
	}
	if err := checkLen("answer's peers", r.GetPeers(), MaxEntryBytes); err != nil {
		return err
	}
	requestVoteResponseFromProto(r, out)
	t.terms.observe(out.Term)
	return nil
}

func (t *Transport) decodeRequestPreVoteRequest(r *leasepb.RaftRequestPreVoteRequest) (*raft.RequestPreVoteRequest, error) {
	if err := checkHeader(r.GetHeader()); err != nil {
		return nil, err
	}
	if err := t.checkCandidacy(r.GetTerm(), r.GetLastLogTerm(), r.GetLastLogIndex()); err != nil {
		return nil, err
	}
	return requestPreVoteRequestFromProto(r), nil
}

func (t *Transport) decodeRequestPreVoteResponse(r *leasepb.RaftRequestPreVoteResponse, out *raft.RequestPreVoteResponse) error {
	if err := checkAnswerHeader(r.GetHeader()); err != nil {
		return err
	}
	if err := t.terms.check("answer's term", r.GetTerm()); err != nil {
		return err
	}
	requestPreVoteResponseFromProto(r, out)
	t.terms.observe(out.Term)
	return nil
}

func (t *Transport) decodeTimeoutNowRequest(r *leasepb.RaftTimeoutNowRequest) (*raft.TimeoutNowRequest, error) {
	if err := checkHeader(r.GetHeader()); err != nil {
		return nil, err
	}
	return timeoutNowRequestFromProto(r), nil
}

func (t *Transport) decodeTimeoutNowResponse(r *leasepb.RaftTimeoutNowResponse, out *raft.TimeoutNowResponse) error {
	if err := checkAnswerHeader(r.GetHeader()); err != nil {
		return err
	}
	timeoutNowResponseFromProto(r, out)
	return nil
}

func (t *Transport) decodeInstallSnapshotRequest(r *leasepb.RaftInstallSnapshotRequest) (*raft.InstallSnapshotRequest, error) {
	if err := checkHeader(r.GetHeader()); err != nil {
		return nil, err
	}
	if err := t.terms.check("term", r.GetTerm()); err != nil {
		return nil, err
	}
	if err := checkLen("leader address", r.GetLeader(), MaxAddrBytes); err != nil {
		return nil, err
	}
	version := r.GetSnapshotVersion()
	if version < int64(raft.SnapshotVersionMin) || version > int64(raft.SnapshotVersionMax) {
		return nil, malformed("snapshot version %d (this raft reads %d to %d)", version, raft.SnapshotVersionMin, raft.SnapshotVersionMax)
	}
	if r.GetLastLogTerm() > r.GetTerm() {
		return nil, malformed("snapshot's last term %d above the request's term %d", r.GetLastLogTerm(), r.GetTerm())
	}
	if err := checkIndex("snapshot's last index", r.GetLastLogIndex()); err != nil {
		return nil, err
	}
	if r.GetConfigurationIndex() > r.GetLastLogIndex() {
		return nil, malformed("configuration index %d past the snapshot's last index %d", r.GetConfigurationIndex(), r.GetLastLogIndex())
	}
	if size := r.GetSize(); size < 0 || size > MaxSnapshotSize {
		return nil, malformed("snapshot size %d (0 to %d)", size, int64(MaxSnapshotSize))
	}
	if err := checkLen("peers", r.GetPeers(), MaxEntryBytes); err != nil {
		return nil, err
	}
	// Version 0 carries the peers instead, which raft decodes without
	// panicking; from version 1 raft decodes the configuration, and panics
	// if it cannot.
	if version >= 1 {
		if err := checkConfiguration("snapshot's configuration", r.GetConfiguration()); err != nil {
			return nil, err
		}
	}
	return installSnapshotRequestFromProto(r), nil
}

func (t *Transport) decodeInstallSnapshotResponse(r *leasepb.RaftInstallSnapshotResponse, out *raft.InstallSnapshotResponse) error {
	if err := checkAnswerHeader(r.GetHeader()); err != nil {
		return err
	}
	if err := t.terms.check("answer's term", r.GetTerm()); err != nil {
		return err
	}
	installSnapshotResponseFromProto(r, out)
	t.terms.observe(out.Term)
	return nil
}
