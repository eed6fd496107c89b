//go:build !chaos

package server

import (
	"context"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/leasecluster/leasecluster/lessor"
)

// chaosBuild is false in normal builds: every fault hook is written as
// `if chaosBuild && ...`, so the compiler drops it and the normal binary has
// no fault path that could be switched on. The functions below only exist so
// that those dead branches type-check; they never run.
const chaosBuild = false

func chaosConfigure(cfg Config) Config                { return cfg }
func chaosLogStore(s raft.LogStore) raft.LogStore     { return s }
func chaosHTTP(_ *Node, h http.Handler) http.Handler  { return h }
func chaosBugIs(string) bool                          { return false }
func (n *Node) chaosLocalRevoke(lessor.LeaseID) error { return nil }
func (n *Node) chaosEarlyExpiry(*leaderTerm)          {}
func (n *Node) chaosSkipVerify(context.Context, chan<- keepAliveBatch, []RenewResult) bool {
	return false
}
