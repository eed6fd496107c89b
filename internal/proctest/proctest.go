// Package proctest runs real binaries as child processes for end-to-end
// tests, the chaos harness and the benchmark: it captures their output (in
// memory or appended to a log file), signals, kills and restarts them, picks
// free loopback ports for them, and remembers every process it started so
// that a TestMain can kill whatever a failed or panicking test left behind.
// Clusters of `leasecluster serve` processes are built on it in
// internal/proccluster.
package proctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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

// Spec is how to start a process.
type Spec struct {
	Name string   // for messages (and the log file's header line) only
	Bin  string   // the program
	Args []string // its arguments
	// Env entries (KEY=VALUE) are added to the caller's own environment,
	// except that every LEASECLUSTER_* variable inherited from it is
	// dropped first, so a developer's shell settings cannot leak in.
	Env []string
	// Log, when set, is a file the process's stdout and stderr are
	// appended to, after a header line naming the start; Stdout and Stderr
	// then stay empty. Otherwise both are kept in memory.
	Log string
}

// Proc is a running (or finished) child process.
type Proc struct {
	Name   string // for messages only
	Cmd    *exec.Cmd
	Stdout Buffer // empty when the output goes to a log file
	Stderr Buffer

	log    string // the log file, if any
	offset int64  // where this run's output begins in it

	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result; set before done is closed
}

var (
	liveMu sync.Mutex // guards live
	live   = map[*Proc]struct{}{}
)

// Start runs bin with args, its output kept in memory; env as in Spec.Env.
func Start(name, bin string, env []string, args ...string) (*Proc, error) {
	return StartSpec(Spec{Name: name, Bin: bin, Args: args, Env: env})
}

// StartSpec starts the process s describes. It runs in its own process
// group (a terminal's Ctrl-C does not reach it) and, on Linux, is killed
// when the caller dies.
func StartSpec(s Spec) (*Proc, error) {
	p := &Proc{Name: s.Name, Cmd: exec.Command(s.Bin, s.Args...), log: s.Log, done: make(chan struct{})}
	p.Cmd.Env = Env(s.Env...)
	var logf *os.File
	if s.Log != "" {
		var err error
		if logf, err = os.OpenFile(s.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return nil, fmt.Errorf("proctest: start %s: %w", s.Name, err)
		}
		fmt.Fprintf(logf, "=== %s: starting %s at %s\n", s.Name, strings.Join(p.Cmd.Args, " "), time.Now().Format(time.RFC3339Nano))
		if st, err := logf.Stat(); err == nil {
			p.offset = st.Size()
		}
		p.Cmd.Stdout, p.Cmd.Stderr = logf, logf
	} else {
		p.Cmd.Stdout, p.Cmd.Stderr = &p.Stdout, &p.Stderr
	}
	setSysProcAttr(p.Cmd)
	if err := p.Cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("proctest: start %s: %w", s.Name, err)
	}
	liveMu.Lock()
	live[p] = struct{}{}
	liveMu.Unlock()
	go func() {
		p.err = p.Cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		liveMu.Lock()
		delete(live, p)
		liveMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Env is the caller's environment without LEASECLUSTER_* variables, plus
// extra.
func Env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASECLUSTER_") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// Pid is the process's ID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

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

// maxOutput bounds what Output reads back from a log file.
const maxOutput = 64 << 10

// Output is what this run of the process has written so far: stdout then
// stderr when kept in memory, else (at most the last 64 KiB of) its part of
// the log file.
func (p *Proc) Output() string {
	if p.log == "" {
		return p.Stdout.String() + p.Stderr.String()
	}
	f, err := os.Open(p.log)
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", p.log, err)
	}
	defer f.Close()
	from := p.offset
	if st, err := f.Stat(); err == nil && st.Size()-from > maxOutput {
		from = st.Size() - maxOutput
	}
	b, err := io.ReadAll(io.NewSectionReader(f, from, maxOutput))
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", p.log, err)
	}
	return string(b)
}

// ExitError is nil while the process runs. Once it has exited it describes
// how, with the tail of its output, and wraps ErrAddrInUse if the process
// failed because an address it was to listen on was taken.
func (p *Proc) ExitError() error {
	if !p.Exited() {
		return nil
	}
	out := p.Output()
	err := fmt.Errorf("proctest: %s exited (%v):\n%s", p.Name, p.Cmd.ProcessState, Tail(out, 10))
	if AddrInUse(out) {
		err = fmt.Errorf("%w: %w", ErrAddrInUse, err)
	}
	return err
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

// Kill sends SIGKILL and waits for the process to be reaped. A stopped
// (SIGSTOP) process dies too.
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
	setSysProcAttr(cmd)
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
