//go:build !linux

package ws

import (
	"errors"
	"syscall"
)

var errNoPoller = errors.New("ws: no epoll on this platform")

// poller is absent where there is no epoll: every connection gets a
// reading goroutine.
type poller struct{}

func newPoller(*Engine) (*poller, error)              { return nil, nil }
func (p *poller) add(*Conn, syscall.RawConn) error    { return errNoPoller }
func (p *poller) rearm(*Conn)                         {}
func (p *poller) remove(*Conn)                        {}
func (p *poller) run()                                {}
func (p *poller) close()                              {}
func (c *Conn) onReadable()                           {}
func (p *poller) watch(*Watch, syscall.RawConn) error { return ErrNoPoller }
func (p *poller) rearmWatch(*Watch)                   {}
func (p *poller) unwatch(*Watch)                      {}

// waitReadable cannot wait without a buffer here; Read does the waiting.
func waitReadable(syscall.RawConn) error { return nil }
