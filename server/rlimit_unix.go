//go:build unix

package server

import "syscall"

// openFileLimit returns the process's soft limit on open files, or 0 when
// it is unknown or practically unlimited.
func openFileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	cur := uint64(rl.Cur) // int64 on some systems
	if cur == 0 || cur > 1<<30 {
		return 0
	}
	return int(cur)
}
