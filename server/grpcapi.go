package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasecluster/leasecluster/fsm"
	"github.com/leasecluster/leasecluster/leasepb"
	"github.com/leasecluster/leasecluster/lessor"
)

// registerAPI registers the public gRPC services of n on s.
func registerAPI(s *grpc.Server, n *Node) {
	leasepb.RegisterLeasesServer(s, &leasesAPI{n: n})
	leasepb.RegisterItemsServer(s, &itemsAPI{n: n})
	leasepb.RegisterClusterServer(s, &clusterAPI{n: n})
	leasepb.RegisterMaintenanceServer(s, &maintenanceAPI{n: n}) // maintenance.go
}

type leasesAPI struct {
	leasepb.UnimplementedLeasesServer
	n *Node
}

func (a *leasesAPI) Grant(ctx context.Context, r *leasepb.GrantRequest) (*leasepb.GrantResponse, error) {
	id, ttl, err := a.n.ops.grant(ctx, lessor.LeaseID(r.Id), r.TtlMs, r.RequestId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &leasepb.GrantResponse{Id: int64(id), TtlMs: ttl}, nil
}

func (a *leasesAPI) Revoke(ctx context.Context, r *leasepb.RevokeRequest) (*leasepb.RevokeResponse, error) {
	if err := a.n.ops.revoke(ctx, lessor.LeaseID(r.Id), r.RequestId); err != nil {
		return nil, toStatus(err)
	}
	return &leasepb.RevokeResponse{}, nil
}

// KeepAlive renews leases on the leader (renewer.serveStream); a follower
// forwards the stream to the leader.
func (a *leasesAPI) KeepAlive(stream leasepb.Leases_KeepAliveServer) error {
	term := a.n.lead.current()
	if term == nil {
		return a.n.fwd.keepAlive(stream)
	}
	return a.n.renewer.serveStream(stream, term)
}

func (a *leasesAPI) TimeToLive(ctx context.Context, r *leasepb.TimeToLiveRequest) (*leasepb.TimeToLiveResponse, error) {
	info, err := a.n.reader.timeToLive(ctx, lessor.LeaseID(r.Id), r.Keys, r.Serializable)
	if err != nil {
		return nil, toStatus(err)
	}
	return &leasepb.TimeToLiveResponse{Id: int64(info.ID), GrantedTtlMs: info.GrantedTTL, RemainingMs: info.Remaining.Milliseconds(), Keys: info.Keys, Owner: info.Owner}, nil
}

func (a *leasesAPI) Leases(ctx context.Context, r *leasepb.LeasesRequest) (*leasepb.LeasesResponse, error) {
	ls, err := a.n.reader.leases(ctx, r.Serializable)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &leasepb.LeasesResponse{Leases: make([]*leasepb.LeaseStatus, len(ls))}
	for i, l := range ls {
		out.Leases[i] = &leasepb.LeaseStatus{Id: int64(l.ID), GrantedTtlMs: l.GrantedTTL, RemainingMs: l.Remaining.Milliseconds(), Owner: l.Owner}
	}
	return out, nil
}

type itemsAPI struct {
	leasepb.UnimplementedItemsServer
	n *Node
}

func itemPB(it fsm.Item) *leasepb.Item {
	return &leasepb.Item{Key: it.Key, LeaseId: int64(it.LeaseID), Value: it.Value, Revision: it.Revision}
}

func (a *itemsAPI) Attach(ctx context.Context, r *leasepb.AttachRequest) (*leasepb.AttachResponse, error) {
	it, err := a.n.ops.attach(ctx, lessor.LeaseID(r.LeaseId), r.Key, r.Value, r.RequestId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &leasepb.AttachResponse{Item: itemPB(it)}, nil
}

func (a *itemsAPI) Detach(ctx context.Context, r *leasepb.DetachRequest) (*leasepb.DetachResponse, error) {
	if err := a.n.ops.detach(ctx, lessor.LeaseID(r.LeaseId), r.Key, r.RequestId); err != nil {
		return nil, toStatus(err)
	}
	return &leasepb.DetachResponse{}, nil
}

func (a *itemsAPI) Get(ctx context.Context, r *leasepb.GetRequest) (*leasepb.GetResponse, error) {
	it, err := a.n.reader.get(ctx, r.Key, r.Serializable)
	if err != nil {
		return nil, toStatus(err)
	}
	return &leasepb.GetResponse{Item: itemPB(it)}, nil
}

type clusterAPI struct {
	leasepb.UnimplementedClusterServer
	n *Node
}

func (a *clusterAPI) Status(ctx context.Context, req *leasepb.StatusRequest) (*leasepb.StatusResponse, error) {
	// The hash is a pass over the whole state; clients call Status to find
	// the leader, so it is computed only on request, and with TLS only for
	// admins and members.
	if req.GetStateHash() && !(authorizer{sec: a.n.cfg.Security}).mayInspect(callerOf(ctx)) {
		return nil, status.Error(codes.PermissionDenied, "server: the state hash is for admins (--admin-cn) and members")
	}
	s := a.n.info.status(req.GetStateHash())
	return &leasepb.StatusResponse{
		Name: s.Name, Role: s.Role, Leader: s.Leader, LeaderAddress: s.LeaderAddr, Term: s.Term,
		AppliedIndex: s.AppliedIndex, CommitIndex: s.CommitIndex, LastIndex: s.LastIndex, StateHash: s.StateHash,
		RaftLog: s.RaftLog,
	}, nil
}

func (a *clusterAPI) Members(ctx context.Context, _ *leasepb.MembersRequest) (*leasepb.MembersResponse, error) {
	ms, err := a.n.info.listMembers(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &leasepb.MembersResponse{}
	for _, m := range ms {
		out.Members = append(out.Members, memberPB(m))
	}
	return out, nil
}

func memberPB(m Member) *leasepb.Member {
	return &leasepb.Member{Name: m.Name, Address: m.Address, Voter: m.Voter, Leader: m.Leader,
		AppliedIndex: m.AppliedIndex, StatusError: m.StatusError, Promoting: m.Promoting}
}

// mayChangeMembership: membership changes are for admins and members with
// TLS (anyone in plaintext, as every call).
func (a *clusterAPI) mayChangeMembership(ctx context.Context) error {
	if !(authorizer{sec: a.n.cfg.Security}).mayInspect(callerOf(ctx)) {
		return status.Error(codes.PermissionDenied, "server: membership changes are for admins (--admin-cn) and members")
	}
	return nil
}

func (a *clusterAPI) AddMember(ctx context.Context, r *leasepb.AddMemberRequest) (*leasepb.AddMemberResponse, error) {
	if err := a.mayChangeMembership(ctx); err != nil {
		return nil, err
	}
	m, err := a.n.members.add(r.Name, r.Address, r.NonVoter, r.Replace)
	if err != nil {
		return nil, memberStatus(err)
	}
	return &leasepb.AddMemberResponse{Member: memberPB(m)}, nil
}

func (a *clusterAPI) RemoveMember(ctx context.Context, r *leasepb.RemoveMemberRequest) (*leasepb.RemoveMemberResponse, error) {
	if err := a.mayChangeMembership(ctx); err != nil {
		return nil, err
	}
	if err := a.n.members.remove(r.Name, r.Force); err != nil {
		return nil, memberStatus(err)
	}
	return &leasepb.RemoveMemberResponse{}, nil
}

func (a *clusterAPI) TransferLeader(ctx context.Context, r *leasepb.TransferLeaderRequest) (*leasepb.TransferLeaderResponse, error) {
	if err := a.mayChangeMembership(ctx); err != nil {
		return nil, err
	}
	name, addr, err := a.n.members.transfer(r.Name)
	if err != nil {
		return nil, memberStatus(err)
	}
	return &leasepb.TransferLeaderResponse{Leader: name, LeaderAddress: addr}, nil
}
