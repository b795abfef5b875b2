package child

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Process is one run of a child's binary (Mailpit, redis-server).
type Process struct {
	Cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited and its output is read
	err    error         // how it exited, once exited is closed
}

// Start starts cmd with its output, after the command line, written to
// out, and has the kernel kill it if the test binary dies without its
// cleanups (see DieWithParent).
func Start(cmd *exec.Cmd, out io.Writer) (*Process, error) {
	fmt.Fprintf(out, "$ %s\n", strings.Join(cmd.Args, " "))
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 5 * time.Second
	DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", cmd.Path, err)
	}
	p := &Process{Cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited and its output is read.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Kill kills the process and waits for it to exit.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.exited
}

// WaitReady asks ready every 20 ms until it holds, and fails when the
// process exits first or deadline passes; the process keeps running
// after a failure, for the caller to stop.
func (p *Process) WaitReady(deadline time.Time, ready func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it answered (%v)", p.err)
		case <-tick.C:
		}
	}
}
