package caddyrun

import "syscall"

// procAttr puts Caddy in a process group of its own (Stop signals the
// group) and has the kernel kill it if the test binary dies without
// running its cleanups, as when go test's -timeout panics, so that no
// Caddy is left listening.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
