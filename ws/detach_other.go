//go:build !linux

package ws

import (
	"net"
	"syscall"
)

// detach keeps net's socket where the engine does not poll.
func detach(nc net.Conn) net.Conn { return nc }

// writeOut writes b.w whole. c.wmu must be held.
func (c *Conn) writeOut(b *batch) error {
	_, err := b.w.WriteTo(c.nc)
	return err
}

func (b *batch) writeAll(uintptr) bool { return true }

// detached never exists here.
type detached struct{ net.Conn }

func (detached) SyscallConn() (syscall.RawConn, error) { return nil, errNoPoller }
