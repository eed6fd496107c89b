package proctest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	KillAll()
	os.Exit(code)
}

// A process that fails to listen is recognised from its log file, and
// RetryAddrInUse tries again only for that failure.
func TestExitErrorAddrInUse(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	tries := 0
	err := RetryAddrInUse(func() error {
		tries++
		p, err := StartSpec(Spec{Name: "p", Bin: "sh", Log: log,
			Args: []string{"-c", "echo 'Error: listen tcp 127.0.0.1:1: bind: address already in use' >&2; exit 1"}})
		if err != nil {
			return err
		}
		<-p.Done()
		return p.ExitError()
	})
	if !errors.Is(err, ErrAddrInUse) || tries != addrInUseTries {
		t.Fatalf("after %d tries: %v; want ErrAddrInUse after %d", tries, err, addrInUseTries)
	}
	b, _ := os.ReadFile(log)
	if n := strings.Count(string(b), "=== p: starting sh -c"); n != addrInUseTries {
		t.Errorf("log has %d start headers, want %d:\n%s", n, addrInUseTries, b)
	}

	p, err := Start("q", "sh", nil, "-c", "echo other failure >&2; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.ExitError(); err == nil || errors.Is(err, ErrAddrInUse) || !strings.Contains(err.Error(), "other failure") {
		t.Errorf("ExitError: %v; want the output, not ErrAddrInUse", err)
	}
}

// A Daemon is killed and started again; ExitContext ends when it dies.
func TestDaemonRestart(t *testing.T) {
	log := filepath.Join(t.TempDir(), "d.log")
	d := NewDaemon(Spec{Name: "d", Bin: "sh", Args: []string{"-c", "echo up; exec sleep 60"}, Env: []string{"X=1"}, Log: log})
	if d.Running() || d.Pid() != 0 {
		t.Fatal("running before Start")
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err == nil {
		t.Error("a second Start of a running daemon succeeded")
	}
	ctx, cancel := ExitContext(context.Background(), d)
	defer cancel()
	first := d.Pid()
	d.Kill()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("ExitContext not cancelled by the kill")
	}
	if d.Running() || d.ExitError() == nil {
		t.Fatalf("after Kill: running %v, exit error %v", d.Running(), d.ExitError())
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if !d.Running() || d.Pid() == first {
		t.Fatalf("after restart: running %v, pid %d (was %d)", d.Running(), d.Pid(), first)
	}
	if err := Eventually(10*time.Second, 10*time.Millisecond, func() error {
		if d.Output() != "up\n" {
			return errors.New("output so far: " + d.Output())
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	d.Stop(5 * time.Second)
	if d.Running() {
		t.Error("running after Stop")
	}
}
