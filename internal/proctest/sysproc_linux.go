package proctest

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr puts the child in its own process group, so that a
// terminal's Ctrl-C reaches only the harness (which stops its children
// itself), and makes the kernel SIGKILL the child if the harness dies
// without cleaning up (a panic, a timeout, kill -9), so no node outlives it
// holding ports. Go does not end the OS threads that start children in
// normal operation, which Pdeathsig would otherwise take as the parent dying.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
