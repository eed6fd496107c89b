//go:build !chaos

package main

import "github.com/leasecluster/leasecluster/server"

// installFaults does nothing in a normal build: no fault point is reachable.
func installFaults(*server.Config) {}
