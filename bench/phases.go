package main

import (
	"fmt"
	"slices"
	"strings"
)

// The phases of a run, in the order they run, and the systems under test.
const (
	phaseThroughput = "throughput"
	phaseExpiry     = "expiry"
	phaseFailover   = "failover"
	phaseMemory     = "memory"
	phaseScale      = "scale"
	phaseRestart    = "restart"
	phaseReplay     = "replay"
	phaseHops       = "hops"

	sysLC   = "leasecluster"
	sysEtcd = "etcd"
)

var (
	allPhases  = []string{phaseHops, phaseThroughput, phaseFailover, phaseExpiry, phaseMemory, phaseScale, phaseRestart, phaseReplay}
	allSystems = []string{sysLC, sysEtcd}
)

// nameSet is a selection of phases or systems.
type nameSet []string

func (s nameSet) has(name string) bool { return slices.Contains(s, name) }

// parseNames parses a comma-separated selection, each name one of valid.
func parseNames(list string, valid []string) (nameSet, error) {
	var out nameSet
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(valid, f) {
			return nil, fmt.Errorf("unknown name %q (want some of %s)", f, strings.Join(valid, ", "))
		}
		if !out.has(f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nothing selected (want some of %s)", strings.Join(valid, ", "))
	}
	return out, nil
}
