package proctest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel SIGKILL the child if the test binary dies
// without cleaning up (a panic, a timeout, kill -9), so no node outlives it
// holding ports. Go does not end the OS threads that start children in
// normal operation, which Pdeathsig would otherwise take as the parent dying.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
