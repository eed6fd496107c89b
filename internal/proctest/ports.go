package proctest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// Ports picked here were free a moment ago; they are released before the
// caller's process binds them, and another process may take one in between
// (tests run in parallel, and every outgoing connection on the machine
// takes an ephemeral port from the same range). Nothing may assume fixed
// ports such as 7001-7003 are free. Callers therefore start their processes
// inside RetryAddrInUse: a process that exits because its address was taken
// makes the whole attempt start over on new ports.

// ErrAddrInUse marks a process that exited because an address it was to
// listen on was already in use (see Proc.ExitError).
var ErrAddrInUse = errors.New("proctest: address already in use")

// AddrInUse reports whether a process's output says that a listen failed
// because the address was taken.
func AddrInUse(output string) bool {
	return strings.Contains(output, "address already in use")
}

// InUse reports whether one of addrs (host:port) is bound by a listening
// socket of some process: after a process exited without saying why (a
// crash on its way out of a failed listen), a taken address is the cause.
// An address that is not local here does not count as in use.
func InUse(addrs ...string) bool {
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return true
			}
			continue
		}
		l.Close()
	}
	return false
}

// addrInUseTries bounds RetryAddrInUse.
const addrInUseTries = 5

// RetryAddrInUse calls try until it returns anything but an error wrapping
// ErrAddrInUse, at most five times. try picks its ports (FreePorts,
// FreePortRange) anew each time and cleans up what it started when it
// fails.
func RetryAddrInUse(try func() error) error {
	var err error
	for range addrInUseTries {
		if err = try(); !errors.Is(err, ErrAddrInUse) {
			return err
		}
	}
	return fmt.Errorf("proctest: %d tries: %w", addrInUseTries, err)
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago. All n are held until all are chosen, so no two are the same.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePortRange returns the first of n consecutive free loopback ports, for
// programs that take a base port and use the next ones.
func FreePortRange(n int) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		base := l.Addr().(*net.TCPAddr).Port
		held := []net.Listener{l}
		for i := 1; i < n && base+i <= 65535; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == n {
			return base, nil
		}
	}
	return 0, errors.New("proctest: no run of free ports found")
}
