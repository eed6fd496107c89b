package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/leasepb"
)

// server is the receiving side: it turns incoming gRPC calls into raft.RPCs
// on the transport's Consumer channel and raft's answers into replies.
type server struct {
	leasepb.UnimplementedRaftTransportServer
	t *Transport
}

// deliver hands rpc to raft: to the heartbeat handler when rpc is a
// heartbeat and one is set (it answers synchronously), otherwise to the
// Consumer channel.
func (t *Transport) deliver(ctx context.Context, rpc raft.RPC) error {
	if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok && isHeartbeat(req) {
		if fn := t.heartbeatHandler(); fn != nil {
			fn(rpc)
			return nil
		}
	}
	select {
	case t.consumeCh <- rpc:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.ctx.Done():
		return errClosed
	}
}

// await waits for raft's answer to an RPC delivered with respCh. respCh is
// buffered, so raft never blocks on an answer nobody waits for any more.
func (t *Transport) await(ctx context.Context, respCh <-chan raft.RPCResponse) (any, error) {
	select {
	case resp := <-respCh:
		return resp.Response, resp.Error
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.ctx.Done():
		return nil, errClosed
	}
}

// dispatch delivers a command to raft and waits for its answer.
func (t *Transport) dispatch(ctx context.Context, cmd any) (any, error) {
	respCh := make(chan raft.RPCResponse, 1)
	if err := t.deliver(ctx, raft.RPC{Command: cmd, RespChan: respCh}); err != nil {
		return nil, err
	}
	return t.await(ctx, respCh)
}

// toStatus maps an error of the receiving side to a gRPC status. raft's own
// errors (an RPC raft answered with an error) travel as Unknown with raft's
// message, as NetworkTransport sends the error string.
func toStatus(err error) error {
	switch {
	case errors.Is(err, ErrMalformed):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		return status.Error(codes.Unknown, err.Error())
	}
}

// refuse logs a peer's malformed request and returns its InvalidArgument
// status. raft retries a failed RPC with a growing backoff, so a peer that
// keeps sending one costs a line every few seconds at most.
func (t *Transport) refuse(rpc string, err error) error {
	t.logger.Warn("refusing a malformed raft RPC", "rpc", rpc, "error", err)
	return toStatus(err)
}

// gateVote asks Config.VoteGate whether a vote request may reach raft.
func (t *Transport) gateVote() error {
	if t.voteGate == nil {
		return nil
	}
	if err := t.voteGate(); err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return nil
}

// errUnexpectedResponse reports an answer of the wrong type from raft: a bug
// in raft or in this package, never a network condition.
var errUnexpectedResponse = errors.New("transport: raft answered with an unexpected response type")

// dispatchAs is dispatch with the answer's type checked.
func dispatchAs[R any](ctx context.Context, t *Transport, cmd any) (*R, error) {
	resp, err := t.dispatch(ctx, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	out, ok := resp.(*R)
	if !ok {
		return nil, status.Error(codes.Internal, fmt.Sprintf("%v: %T", errUnexpectedResponse, resp))
	}
	return out, nil
}

func (s *server) AppendEntries(ctx context.Context, req *leasepb.RaftAppendEntriesRequest) (*leasepb.RaftAppendEntriesResponse, error) {
	cmd, err := s.t.decodeAppendEntriesRequest(req)
	if err != nil {
		return nil, s.t.refuse("AppendEntries", err)
	}
	resp, err := dispatchAs[raft.AppendEntriesResponse](ctx, s.t, cmd)
	if err != nil {
		return nil, err
	}
	s.t.terms.observe(resp.Term)
	return appendEntriesResponseToProto(resp), nil
}

func (s *server) RequestVote(ctx context.Context, req *leasepb.RaftRequestVoteRequest) (*leasepb.RaftRequestVoteResponse, error) {
	cmd, err := s.t.decodeRequestVoteRequest(req)
	if err != nil {
		return nil, s.t.refuse("RequestVote", err)
	}
	if err := s.t.gateVote(); err != nil {
		return nil, err
	}
	resp, err := dispatchAs[raft.RequestVoteResponse](ctx, s.t, cmd)
	if err != nil {
		return nil, err
	}
	s.t.terms.observe(resp.Term)
	return requestVoteResponseToProto(resp), nil
}

func (s *server) RequestPreVote(ctx context.Context, req *leasepb.RaftRequestPreVoteRequest) (*leasepb.RaftRequestPreVoteResponse, error) {
	cmd, err := s.t.decodeRequestPreVoteRequest(req)
	if err != nil {
		return nil, s.t.refuse("RequestPreVote", err)
	}
	if err := s.t.gateVote(); err != nil {
		return nil, err
	}
	resp, err := dispatchAs[raft.RequestPreVoteResponse](ctx, s.t, cmd)
	if err != nil {
		return nil, err
	}
	s.t.terms.observe(resp.Term)
	return requestPreVoteResponseToProto(resp), nil
}

func (s *server) TimeoutNow(ctx context.Context, req *leasepb.RaftTimeoutNowRequest) (*leasepb.RaftTimeoutNowResponse, error) {
	cmd, err := s.t.decodeTimeoutNowRequest(req)
	if err != nil {
		return nil, s.t.refuse("TimeoutNow", err)
	}
	resp, err := dispatchAs[raft.TimeoutNowResponse](ctx, s.t, cmd)
	if err != nil {
		return nil, err
	}
	return timeoutNowResponseToProto(resp), nil
}

// AppendEntriesPipeline answers pipelined requests one at a time, in the
// order they arrive, which is the order the sender's futures expect. An
// error raft answers for one request travels in that request's response;
// only a transport failure ends the stream.
func (s *server) AppendEntriesPipeline(stream leasepb.RaftTransport_AppendEntriesPipelineServer) error {
	ctx := stream.Context()
	// Receive in a goroutine so that the handler also returns when this
	// transport closes: the peer keeps its pipeline open for as long as it
	// leads, and a node that is stopping must not wait for that (a graceful
	// gRPC stop waits for every open stream). Returning cancels the stream,
	// which ends the receiving goroutine.
	type recvd struct {
		req *leasepb.RaftAppendEntriesRequest
		err error
	}
	reqs := make(chan recvd)
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case reqs <- recvd{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var r recvd
		select {
		case r = <-reqs:
		case <-s.t.ctx.Done():
			return toStatus(ErrClosed)
		}
		req, err := r.req, r.err
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		// A malformed request ends the stream: the peer's later requests
		// were built on it.
		cmd, err := s.t.decodeAppendEntriesRequest(req)
		if err != nil {
			return s.t.refuse("AppendEntriesPipeline", err)
		}
		out, err := s.t.pipelineAnswer(ctx, cmd)
		switch {
		case errors.Is(err, errUnexpectedResponse):
			return status.Error(codes.Internal, err.Error())
		case err != nil:
			return toStatus(err)
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}
