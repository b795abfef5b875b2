package redisrun

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill redis-server if the test binary dies
// without running its cleanups, as when go test's -timeout panics, so that
// no Redis is left listening.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
