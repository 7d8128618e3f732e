//go:build !linux

package main

import "os/exec"

// setChildAttrs: without Pdeathsig the child relies on its own lifetime
// limit (childLifetime) if this process dies first.
func setChildAttrs(*exec.Cmd) {}
