package proctest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Daemon is a long-running process that can be killed, stopped and started
// again with the same command line (a node restarting on its data dir). It
// is safe for concurrent use.
type Daemon struct {
	spec Spec

	mu   sync.Mutex // guards proc
	proc *Proc      // the current (or last) run; nil before the first Start
}

// NewDaemon returns a daemon for s, not yet started.
func NewDaemon(s Spec) *Daemon { return &Daemon{spec: s} }

// Name is the spec's name.
func (d *Daemon) Name() string { return d.spec.Name }

// Start starts the process; after a kill or stop it starts it again. It
// fails if the process is running.
func (d *Daemon) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil && !d.proc.Exited() {
		return fmt.Errorf("proctest: %s is already running", d.spec.Name)
	}
	p, err := StartSpec(d.spec)
	if err != nil {
		return err
	}
	d.proc = p
	return nil
}

// Proc is the current (or last) run, nil before the first Start.
func (d *Daemon) Proc() *Proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}

// Running reports whether the process is alive (also while stopped by
// SIGSTOP).
func (d *Daemon) Running() bool {
	p := d.Proc()
	return p != nil && !p.Exited()
}

// Pid is the current run's process ID (0 before the first Start).
func (d *Daemon) Pid() int {
	if p := d.Proc(); p != nil {
		return p.Pid()
	}
	return 0
}

// Signal sends sig to the current run (a no-op when none is running).
func (d *Daemon) Signal(sig os.Signal) error {
	if p := d.Proc(); p != nil {
		return p.Signal(sig)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (d *Daemon) Kill() {
	if p := d.Proc(); p != nil {
		p.Kill()
	}
}

// Stop asks the process to exit with SIGTERM and kills it if it has not
// within grace.
func (d *Daemon) Stop(grace time.Duration) {
	if p := d.Proc(); p != nil {
		p.Stop(grace)
	}
}

// ExitError is the current run's Proc.ExitError; an error too before the
// first Start.
func (d *Daemon) ExitError() error {
	p := d.Proc()
	if p == nil {
		return errors.New("proctest: " + d.spec.Name + " not started")
	}
	return p.ExitError()
}

// Output is the current run's Proc.Output ("" before the first Start).
func (d *Daemon) Output() string {
	if p := d.Proc(); p != nil {
		return p.Output()
	}
	return ""
}

// ExitContext returns a context that is also cancelled when one of ds
// exits, with that run's ExitError as its cause (context.Cause): a wait for
// a process to become ready then ends as soon as it has died. Daemons not
// running are ignored.
func ExitContext(ctx context.Context, ds ...*Daemon) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	for _, d := range ds {
		p := d.Proc()
		if p == nil {
			continue
		}
		go func() {
			select {
			case <-p.Done():
				cancel(p.ExitError())
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() { cancel(context.Canceled) }
}
