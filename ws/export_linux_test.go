//go:build linux

package ws

// Detached reports whether a connection's socket was taken out of package
// net (detach_linux.go).
func Detached(c *Conn) bool {
	_, ok := c.nc.(detached)
	return ok
}
