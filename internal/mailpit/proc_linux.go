package mailpit

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill Mailpit if the test binary dies
// without running its cleanups, as when go test's -timeout panics, so that
// no Mailpit is left listening.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
