//go:build !linux

package caddyrun

import "syscall"

// procAttr puts Caddy in a process group of its own; only Linux can also
// kill a child when its parent dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
