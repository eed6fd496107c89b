//go:build !linux

package proctest

import "os/exec"

// setSysProcAttr is Linux-only; elsewhere TestMain's KillAll must suffice.
func setSysProcAttr(*exec.Cmd) {}
