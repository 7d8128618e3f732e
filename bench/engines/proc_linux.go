//go:build linux

package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes the kernel kill the server child if this process dies
// first, so no server outlives a crashed or interrupted run.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
