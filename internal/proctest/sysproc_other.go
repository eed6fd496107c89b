//go:build !linux

package proctest

import "os/exec"

// setDeathSignal is Linux-only; elsewhere TestMain's KillAll must suffice.
func setDeathSignal(*exec.Cmd) {}
