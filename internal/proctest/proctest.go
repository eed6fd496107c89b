// Package proctest runs real binaries as child processes for end-to-end
// tests: it captures their output, signals and kills them, and remembers
// every process it started so that a TestMain can kill whatever a failed or
// panicking test left behind.
package proctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Buffer is a bytes.Buffer safe for a child's writes and a test's reads.
type Buffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Proc is a running (or finished) child process.
type Proc struct {
	Name   string // for messages only
	Cmd    *exec.Cmd
	Stdout Buffer
	Stderr Buffer

	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result; set before done is closed
}

var (
	liveMu sync.Mutex // guards live
	live   = map[*Proc]struct{}{}
)

// Start runs bin with args. env entries (KEY=VALUE) are added to the test's
// own environment, except that every LEASECLUSTER_* variable inherited from
// it is dropped first, so a developer's shell settings cannot leak in.
func Start(name, bin string, env []string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.Cmd.Env = Env(env...)
	p.Cmd.Stdout = &p.Stdout
	p.Cmd.Stderr = &p.Stderr
	setDeathSignal(p.Cmd)
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("proctest: start %s: %w", name, err)
	}
	liveMu.Lock()
	live[p] = struct{}{}
	liveMu.Unlock()
	go func() {
		p.err = p.Cmd.Wait()
		liveMu.Lock()
		delete(live, p)
		liveMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Env is the test's environment without LEASECLUSTER_* variables, plus extra.
func Env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASECLUSTER_") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status (-1 if killed by a signal or still running).
func (p *Proc) ExitCode() int {
	if !p.Exited() || p.Cmd.ProcessState == nil {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process (a no-op once it has exited).
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns Cmd.Wait's
// error (an *exec.ExitError for a non-zero status).
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("proctest: %s still running after %v", p.Name, timeout)
	}
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to exit with SIGTERM and kills it if it has not
// within grace.
func (p *Proc) Stop(grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	if p.Wait(grace) != nil && !p.Exited() {
		p.Kill()
	}
}

// KillAll kills every process started by Start that is still running. Meant
// for TestMain, after m.Run, so no child outlives the test binary.
func KillAll() {
	liveMu.Lock()
	ps := make([]*Proc, 0, len(live))
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	for _, p := range ps {
		p.Kill()
	}
}

// Result is the outcome of a command run to completion.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status
}

// Run runs bin to completion (bounded by ctx) and returns its output and
// exit status. err is only for failures to run it at all or a timeout.
func Run(ctx context.Context, bin string, env []string, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = Env(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	setDeathSignal(cmd)
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("proctest: %s %s: %w", bin, strings.Join(args, " "), ctx.Err())
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	case err != nil:
		return res, err
	}
	return res, nil
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago. All n are held until all are chosen, so no two are the same; another
// process may still take one before the caller binds it (the window is small).
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

// Eventually polls cond every tick until it returns nil or timeout passes,
// and returns cond's last error in that case.
func Eventually(timeout, tick time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(tick)
	}
}

// Tail returns the last n lines of s, for failure messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
