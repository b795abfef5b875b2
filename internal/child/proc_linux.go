package child

import (
	"os/exec"
	"syscall"
)

// DieWithParent has the kernel kill cmd's process if the test binary dies
// without running its cleanups, as when go test's -timeout panics, so
// that no child is left listening. It keeps what cmd.SysProcAttr already
// asks for (a process group of its own, for Caddy).
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
