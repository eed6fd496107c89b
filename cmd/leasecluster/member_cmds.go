package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/leasepb"
)

// addMemberCommands adds the membership commands to cluster (issue 21):
// members, add-member, remove-member, transfer-leader. With TLS the changes
// need an admin certificate (--admin-cn on the nodes).
func addMemberCommands(cluster *cobra.Command) {
	cluster.AddCommand(newMembersCmd(), newAddMemberCmd(), newRemoveMemberCmd(), newTransferLeaderCmd())
}

type memberJSON struct {
	Name         string `json:"name"`
	Address      string `json:"address"`
	Voter        bool   `json:"voter"`
	Leader       bool   `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	StatusError  string `json:"status_error,omitempty"`
	Promoting    bool   `json:"promoting,omitempty"`
}

func memberOut(m *leasepb.Member) memberJSON {
	return memberJSON{Name: m.GetName(), Address: m.GetAddress(), Voter: m.GetVoter(), Leader: m.GetLeader(),
		AppliedIndex: m.GetAppliedIndex(), StatusError: m.GetStatusError(), Promoting: m.GetPromoting()}
}

// suffrageText is a member's place: voter, non-voter, or a non-voter that
// is catching up to be promoted.
func (m memberJSON) suffrageText() string {
	switch {
	case m.Voter:
		return "voter"
	case m.Promoting:
		return "non-voter (catching up)"
	}
	return "non-voter"
}

func newMembersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the Raft members: voter or non-voter, leader, each one's applied index",
		Long: `List the Raft members as the answering node (the leader, if known) sees
them. APPLIED is each member's own applied index, read from its status; "?"
when it could not be read (the member is down or unreachable).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ms, err := c.Members(ctx)
				if err != nil {
					return err
				}
				out := struct {
					Members []memberJSON `json:"members"`
				}{Members: []memberJSON{}}
				for _, x := range ms {
					out.Members = append(out.Members, memberOut(x))
				}
				return emit(cmd.OutOrStdout(), out, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tADDRESS\tSUFFRAGE\tLEADER\tAPPLIED")
					for _, x := range out.Members {
						applied := fmt.Sprint(x.AppliedIndex)
						if x.StatusError != "" {
							applied = "?"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", x.Name, x.Address, x.suffrageText(), x.Leader, applied)
					}
					tw.Flush()
				})
			})
		},
	}
}

func newAddMemberCmd() *cobra.Command {
	var nonVoter, wait bool
	cmd := &cobra.Command{
		Use:   "add-member NAME ADDR",
		Short: "Add a node (its --name and gRPC address) as a non-voter, promoted to voter once it has caught up",
		Long: `Add the node NAME, which peers reach at ADDR (its --advertise-addr), to the
cluster. It joins as a non-voter and the leader promotes it to voter once its
applied index has caught up with the leader's commit index, so adding a node
never costs quorum; --non-voter keeps it a non-voter. The node must be
running with an empty data dir and without --initial-cluster (or use
serve --join, which does this by itself). With --wait the command returns
once the node is a voter (bounded by --timeout). One membership change runs
at a time.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				m, err := c.AddMember(ctx, args[0], args[1], client.MemberOptions{NonVoter: nonVoter})
				if err != nil {
					return err
				}
				out := memberOut(m)
				if wait && !nonVoter {
					if out, err = awaitVoter(ctx, c, args[0]); err != nil {
						return err
					}
				}
				return emit(cmd.OutOrStdout(), out, func(w io.Writer) {
					switch {
					case out.Voter:
						fmt.Fprintf(w, "%s (%s) is a voter\n", out.Name, out.Address)
					case out.Promoting:
						fmt.Fprintf(w, "added %s (%s) as a non-voter; the leader promotes it to voter once it has caught up (see cluster members)\n", out.Name, out.Address)
					default:
						fmt.Fprintf(w, "added %s (%s) as a non-voter\n", out.Name, out.Address)
					}
				})
			})
		},
	}
	cmd.Flags().BoolVar(&nonVoter, "non-voter", false, "keep the node a non-voter (never promoted)")
	cmd.Flags().BoolVar(&wait, "wait", false, "return once the node is a voter")
	return cmd
}

// awaitVoter polls the members until name is a voter or ctx ends.
func awaitVoter(ctx context.Context, c *client.Client, name string) (memberJSON, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if ms, err := c.Members(ctx); err == nil {
			for _, m := range ms {
				if m.GetName() == name && m.GetVoter() {
					return memberOut(m), nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return memberJSON{}, fmt.Errorf("%s is not a voter yet: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

func newRemoveMemberCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove-member NAME",
		Short: "Remove a member; the leader hands leadership over first if it is the one removed",
		Long: `Remove the member NAME from the cluster. The removed node stops serving and
reports role "removed". Removing the leader hands leadership to another voter
first. A removal that would leave fewer live voters than a quorum of the
remaining voters is refused unless --force. One membership change runs at a
time.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.RemoveMember(ctx, args[0], force); err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), struct {
					Removed string `json:"removed"`
				}{args[0]}, func(w io.Writer) { fmt.Fprintf(w, "removed %s\n", args[0]) })
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even if the remaining live voters are no quorum")
	return cmd
}

func newTransferLeaderCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [NAME]",
		Short: "Hand leadership to the voter NAME, or to any voter",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				leader, addr, err := c.TransferLeader(ctx, name)
				if err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), struct {
					Leader        string `json:"leader"`
					LeaderAddress string `json:"leader_address"`
				}{leader, addr}, func(w io.Writer) { fmt.Fprintf(w, "%s (%s) leads\n", leader, addr) })
			})
		},
	}
}
