//go:build chaos

package main

import (
	"github.com/leasecluster/leasecluster/internal/faults"
	"github.com/leasecluster/leasecluster/server"
)

// installFaults gives a node of the chaos build its fault points (the chaos
// harness's controls and the broken variants of its bite tests).
func installFaults(cfg *server.Config) { faults.Install(cfg) }
