package client

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/leasecluster/leasecluster/leasepb"
)

// Errors of the membership calls (AddMember, RemoveMember, TransferLeader).
var (
	// ErrMemberNotFound: no member has that name (gRPC NotFound).
	ErrMemberNotFound = errors.New("client: no such member")
	// ErrMembershipRefused: the leader refused the change (gRPC
	// FailedPrecondition): another change is in flight (one at a time), the
	// removal would leave the cluster without a quorum of live voters (see
	// RemoveMember's force), or the name or address is taken. The message
	// says which. Not retried.
	ErrMembershipRefused = errors.New("client: membership change refused")
)

// MemberOptions are AddMember's options.
type MemberOptions struct {
	// NonVoter keeps the member a non-voter; otherwise the leader promotes
	// it to voter once it has caught up.
	NonVoter bool
	// Replace says that the node starts from an empty data dir: a voter of
	// that name is removed first and added again as a non-voter (serve
	// --join sets it).
	Replace bool
}

// AddMember adds the node name, reachable by peers at addr (its gRPC
// address), as a non-voter, which the leader promotes to voter once it has
// caught up unless opts.NonVoter. It returns once the node is in the
// configuration, before the promotion (Members shows it: voter false,
// promoting true). Adding a member that is already there as asked changes
// nothing, so the call is safe to retry.
func (c *Client) AddMember(ctx context.Context, name, addr string, opts MemberOptions) (*leasepb.Member, error) {
	req := &leasepb.AddMemberRequest{Name: name, Address: addr, NonVoter: opts.NonVoter, Replace: opts.Replace}
	var resp *leasepb.AddMemberResponse
	err := c.do(ctx, ErrMemberNotFound, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewClusterClient(cc).AddMember(ctx, req)
		return err
	})
	if err != nil {
		return nil, memberError(err)
	}
	return resp.GetMember(), nil
}

// RemoveMember removes the member name. Removing the leader hands leadership
// over first (the call follows it to the new leader). A removal that would
// leave fewer live voters than a quorum of the remaining ones is refused
// with ErrMembershipRefused unless force.
func (c *Client) RemoveMember(ctx context.Context, name string, force bool) error {
	req := &leasepb.RemoveMemberRequest{Name: name, Force: force}
	err := c.do(ctx, ErrMemberNotFound, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := leasepb.NewClusterClient(cc).RemoveMember(ctx, req)
		return err
	})
	return memberError(err)
}

// TransferLeader hands leadership to the voter name, or to any voter if
// name is empty, and returns the new leader's name and address.
func (c *Client) TransferLeader(ctx context.Context, name string) (leader, addr string, err error) {
	req := &leasepb.TransferLeaderRequest{Name: name}
	var resp *leasepb.TransferLeaderResponse
	err = c.do(ctx, ErrMemberNotFound, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = leasepb.NewClusterClient(cc).TransferLeader(ctx, req)
		return err
	})
	if err != nil {
		return "", "", memberError(err)
	}
	if a := resp.GetLeaderAddress(); a != "" {
		c.noteLeader(a)
	}
	return resp.GetLeader(), resp.GetLeaderAddress(), nil
}

// memberError gives FailedPrecondition its meaning for membership calls
// (mapError reads it as ErrItemHeld, the meaning for items).
func memberError(err error) error {
	var re *rpcError
	if errors.As(err, &re) && re.st.Code() == codes.FailedPrecondition {
		return &rpcError{sentinel: ErrMembershipRefused, st: re.st}
	}
	return err
}
