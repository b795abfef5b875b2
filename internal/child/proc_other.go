//go:build !linux

package child

import "os/exec"

// DieWithParent does nothing: only Linux kills a child when its parent
// dies.
func DieWithParent(cmd *exec.Cmd) {}
