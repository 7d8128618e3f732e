//go:build !unix

package server

// openFileLimit returns 0: this platform has no open-file limit to derive
// limits.max_connections from.
func openFileLimit() int { return 0 }
