package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/limits"
)

// clientFlags are shared by every client command.
type clientFlags struct {
	endpoints string
	output    string
	timeout   time.Duration
}

var cf clientFlags

// addClientCommands adds lease, item and cluster with their shared flags.
func addClientCommands(root *cobra.Command) {
	for _, cmd := range []*cobra.Command{newLeaseCmd(), newItemCmd(), newClusterCmd()} {
		pf := cmd.PersistentFlags()
		pf.StringVar(&cf.endpoints, "endpoints", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", "comma-separated gRPC endpoints of the cluster")
		pf.StringVarP(&cf.output, "output", "o", "text", "output format: text or json")
		pf.DurationVar(&cf.timeout, "timeout", 10*time.Second, "how long a command may take")
		addClientTLSFlags(pf)
		root.AddCommand(cmd)
	}
}

// withClient runs f with a client for --endpoints and a context bounded by --timeout.
func withClient(cmd *cobra.Command, f func(ctx context.Context, c *client.Client) error) error {
	if cf.output != "text" && cf.output != "json" {
		return fmt.Errorf("--output must be text or json, not %q", cf.output)
	}
	eps, err := endpointList()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), cf.timeout)
	defer cancel()
	c, err := newCLIClient(ctx, eps)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(ctx, c)
}

// endpointList parses --endpoints (or LEASECLUSTER_ENDPOINTS).
func endpointList() ([]string, error) {
	var eps []string
	for _, e := range strings.Split(cf.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("no endpoints: set --endpoints or LEASECLUSTER_ENDPOINTS")
	}
	return eps, nil
}

// emit writes v as JSON, or text() as text, per --output.
func emit(w io.Writer, v any, text func(w io.Writer)) error {
	if cf.output == "json" {
		enc := json.NewEncoder(w)
		return enc.Encode(v)
	}
	text(w)
	return nil
}

// parseID parses a lease ID argument as the HTTP API does (decimal digits,
// 1..2^63-1).
func parseID(s string) (int64, error) {
	id, err := limits.ParseLeaseID(s)
	if err != nil {
		return 0, fmt.Errorf("lease ID %q is not a positive integer: %w", s, err)
	}
	return id, nil
}

func idString(id int64) string { return strconv.FormatInt(id, 10) }

// JSON shapes follow the HTTP API: IDs and revisions as decimal strings.
type leaseJSON struct {
	ID           string   `json:"id"`
	TTLMs        int64    `json:"ttl_ms,omitempty"`
	GrantedTTLMs int64    `json:"granted_ttl_ms,omitempty"`
	RemainingMs  *int64   `json:"remaining_ms,omitempty"`
	Items        []string `json:"items,omitempty"`
}

type itemJSON struct {
	Key      string `json:"key"`
	LeaseID  string `json:"lease_id"`
	Value    string `json:"value"`
	Revision string `json:"revision"`
}

func itemOut(it client.Item) itemJSON {
	return itemJSON{Key: it.Key, LeaseID: idString(it.LeaseID), Value: it.Value, Revision: strconv.FormatUint(it.Revision, 10)}
}

func newLeaseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lease", Short: "Grant, renew, inspect and revoke leases"}
	var ttl time.Duration
	var id int64
	grant := &cobra.Command{
		Use: "grant", Short: "Grant a lease", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				var opts []client.GrantOption
				if id != 0 {
					opts = append(opts, client.WithID(id))
				}
				l, err := c.Grant(ctx, ttl, opts...)
				if err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), leaseJSON{ID: idString(l.ID), TTLMs: l.TTL.Milliseconds()}, func(w io.Writer) {
					fmt.Fprintf(w, "lease %d granted with TTL %v\n", l.ID, l.TTL)
				})
			})
		},
	}
	grant.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "time to live (raised to the cluster's minimum)")
	grant.Flags().Int64Var(&id, "id", 0, "lease ID to use (default: the leader chooses)")

	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a lease and delete its items", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.Revoke(ctx, id); err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), struct{}{}, func(w io.Writer) { fmt.Fprintf(w, "lease %d revoked\n", id) })
			})
		},
	}

	var keys bool
	ttlCmd := &cobra.Command{
		Use: "ttl ID", Short: "Show a lease's TTL, remaining time and items", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				info, err := c.TimeToLive(ctx, id, keys)
				if err != nil {
					return err
				}
				rem := info.Remaining.Milliseconds()
				items := info.Keys
				if items == nil {
					items = []string{}
				}
				out := struct {
					ID           string   `json:"id"`
					GrantedTTLMs int64    `json:"granted_ttl_ms"`
					RemainingMs  int64    `json:"remaining_ms"`
					Owner        string   `json:"owner,omitempty"` // the identity that granted it, as in the HTTP API
					Items        []string `json:"items"`
				}{idString(info.ID), info.GrantedTTL.Milliseconds(), rem, info.Owner, items}
				return emit(cmd.OutOrStdout(), out, func(w io.Writer) {
					owner := ""
					if info.Owner != "" {
						owner = fmt.Sprintf(", owner %q", info.Owner)
					}
					fmt.Fprintf(w, "lease %d: granted TTL %v, remaining %v%s, items: %s\n", info.ID, info.GrantedTTL,
						info.Remaining.Round(time.Millisecond), owner, strings.Join(items, ", "))
				})
			})
		},
	}
	ttlCmd.Flags().BoolVar(&keys, "keys", true, "list the attached items")

	list := &cobra.Command{
		Use: "list", Short: "List every lease", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ls, err := c.Leases(ctx)
				if err != nil {
					return err
				}
				out := struct {
					Leases []leaseJSON `json:"leases"`
				}{Leases: []leaseJSON{}}
				for _, l := range ls {
					rem := l.Remaining.Milliseconds()
					out.Leases = append(out.Leases, leaseJSON{ID: idString(l.ID), GrantedTTLMs: l.GrantedTTL.Milliseconds(), RemainingMs: &rem})
				}
				return emit(cmd.OutOrStdout(), out, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tGRANTED TTL\tREMAINING")
					for _, l := range ls {
						fmt.Fprintf(tw, "%d\t%v\t%v\n", l.ID, l.GrantedTTL, l.Remaining.Round(time.Millisecond))
					}
					tw.Flush()
				})
			})
		},
	}

	var once bool
	keepalive := &cobra.Command{
		Use: "keepalive ID", Short: "Keep a lease alive until interrupted (or renew it once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			if once {
				return withClient(cmd, func(ctx context.Context, c *client.Client) error {
					ttl, err := c.Renew(ctx, id)
					if err != nil {
						return err
					}
					return emit(cmd.OutOrStdout(), leaseJSON{ID: idString(id), TTLMs: ttl.Milliseconds()}, func(w io.Writer) {
						fmt.Fprintf(w, "lease %d renewed, TTL %v\n", id, ttl)
					})
				})
			}
			return keepAliveUntilInterrupted(cmd, id)
		},
	}
	keepalive.Flags().BoolVar(&once, "once", false, "renew once and exit")

	cmd.AddCommand(grant, revoke, ttlCmd, list, keepalive)
	return cmd
}

// keepAliveUntilInterrupted renews id until Ctrl-C, or until the lease is lost
// (exit status 1).
func keepAliveUntilInterrupted(cmd *cobra.Command, id int64) error {
	eps, err := endpointList()
	if err != nil {
		return err
	}
	ctx, cancel := signalContext(cmd.Context())
	defer cancel()
	c, err := newCLIClient(ctx, eps)
	if err != nil {
		return err
	}
	defer c.Close()
	startCtx, startCancel := context.WithTimeout(ctx, cf.timeout)
	ka, err := c.KeepAlive(startCtx, id)
	startCancel()
	if err != nil {
		return err
	}
	defer ka.Close()
	w := cmd.OutOrStdout()
	emit(w, leaseJSON{ID: idString(id), TTLMs: ka.TTL().Milliseconds()}, func(w io.Writer) {
		fmt.Fprintf(w, "keeping lease %d alive (TTL %v); Ctrl-C to stop\n", id, ka.TTL())
	})
	select {
	case <-ctx.Done():
		return nil
	case <-ka.Lost():
		return fmt.Errorf("lease %d lost: %v", id, ka.Err())
	}
}

func newItemCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "item", Short: "Attach, detach and read items"}
	var lease, value string
	attach := &cobra.Command{
		Use: "attach KEY", Short: "Attach an item to a lease (prints its fencing token)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(lease)
			if err != nil {
				return err
			}
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				it, err := c.Attach(ctx, id, args[0], value)
				if err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), itemOut(it), func(w io.Writer) {
					fmt.Fprintf(w, "item %q attached to lease %d, revision %d\n", it.Key, it.LeaseID, it.Revision)
				})
			})
		},
	}
	attach.Flags().StringVar(&lease, "lease", "", "lease ID (required)")
	attach.Flags().StringVar(&value, "value", "", "the item's value")
	attach.MarkFlagRequired("lease")

	var detachLease string
	detach := &cobra.Command{
		Use: "detach KEY", Short: "Detach an item from its lease", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(detachLease)
			if err != nil {
				return err
			}
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.Detach(ctx, id, args[0]); err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), struct{}{}, func(w io.Writer) { fmt.Fprintf(w, "item %q detached\n", args[0]) })
			})
		},
	}
	detach.Flags().StringVar(&detachLease, "lease", "", "lease ID holding the item (required)")
	detach.MarkFlagRequired("lease")

	get := &cobra.Command{
		Use: "get KEY", Short: "Show an item, its holder and revision", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				it, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), itemOut(it), func(w io.Writer) {
					fmt.Fprintf(w, "item %q: lease %d, revision %d, value %q\n", it.Key, it.LeaseID, it.Revision, it.Value)
				})
			})
		},
	}
	cmd.AddCommand(attach, detach, get)
	return cmd
}

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Show the cluster's nodes"}
	var withHash bool
	status := &cobra.Command{
		Use: "status", Short: "Show every endpoint's role, leader, term, applied index, raft log and state hash", Args: cobra.NoArgs,
		Long: `Show every endpoint's role, leader, term, applied index and raft log, and (unless
--hash=false) its state hash with the index of the last entry applied to the
hashed state. Nodes at the same hash index must show the same hash; if two do
not, the command says so and exits 1. With TLS the hash is for admins and
members only (HASH shows "-" for others).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, func(ctx context.Context, c *client.Client) error {
				type row struct {
					Endpoint     string `json:"endpoint"`
					Name         string `json:"name,omitempty"`
					Role         string `json:"role,omitempty"`
					Leader       string `json:"leader,omitempty"`
					Term         uint64 `json:"term,omitempty"`
					AppliedIndex uint64 `json:"applied_index,omitempty"`
					RaftLog      string `json:"raft_log,omitempty"`
					StateHash    string `json:"state_hash,omitempty"`
					HashIndex    uint64 `json:"hash_index,omitempty"` // the state machine's applied index of the hash
					HashError    string `json:"hash_error,omitempty"`
					Error        string `json:"error,omitempty"`
				}
				var rows []row
				reached := 0
				for _, ep := range c.Endpoints() {
					s, err := c.StatusOf(ctx, ep)
					if err != nil {
						rows = append(rows, row{Endpoint: ep, Error: oneLine(err)})
						continue
					}
					reached++
					r := row{Endpoint: ep, Name: s.Name, Role: s.Role, Leader: s.Leader, Term: s.Term, AppliedIndex: s.AppliedIndex, RaftLog: s.RaftLog}
					if withHash {
						if h, err := c.StateHashOf(ctx, ep); err != nil {
							r.HashError = oneLine(err)
						} else {
							r.StateHash, r.HashIndex = h.Hash, h.AppliedIndex
						}
					}
					rows = append(rows, r)
				}
				// Nodes that hashed the same index must agree.
				var diverged []string
				byIndex := map[uint64]string{}
				for _, r := range rows {
					if r.StateHash == "" {
						continue
					}
					if h, ok := byIndex[r.HashIndex]; ok && h != r.StateHash {
						diverged = append(diverged, fmt.Sprintf("%s at index %d", r.Endpoint, r.HashIndex))
					}
					byIndex[r.HashIndex] = r.StateHash
				}
				err := emit(cmd.OutOrStdout(), struct {
					Nodes []row `json:"nodes"`
				}{rows}, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprint(tw, "ENDPOINT\tNAME\tROLE\tLEADER\tTERM\tAPPLIED\tRAFT LOG")
					if withHash {
						fmt.Fprint(tw, "\tHASH\tHASH INDEX")
					}
					fmt.Fprintln(tw)
					for _, r := range rows {
						if r.Error != "" {
							fmt.Fprintf(tw, "%s\t-\tunreachable\t-\t-\t-\t-", r.Endpoint)
						} else {
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s", r.Endpoint, r.Name, r.Role, r.Leader, r.Term, r.AppliedIndex, r.RaftLog)
						}
						if withHash && r.StateHash != "" {
							fmt.Fprintf(tw, "\t%.16s\t%d", r.StateHash, r.HashIndex)
						} else if withHash {
							fmt.Fprint(tw, "\t-\t-")
						}
						fmt.Fprintln(tw)
					}
					tw.Flush()
				})
				if err == nil && reached == 0 {
					err = errors.New("no endpoint answered")
				}
				if err == nil && len(diverged) > 0 {
					err = fmt.Errorf("state hashes differ between nodes at the same index: %s", strings.Join(diverged, ", "))
				}
				return err
			})
		},
	}
	status.Flags().BoolVar(&withHash, "hash", true, "also show each node's state hash at its applied index (a pass over each node's state)")
	cmd.AddCommand(status)
	addMemberCommands(cmd) // member_cmds.go: members, add-member, remove-member, transfer-leader
	return cmd
}
