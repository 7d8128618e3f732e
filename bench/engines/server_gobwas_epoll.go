//go:build linux

package main

// gobwas-epoll: github.com/gobwas/ws for the handshake (ws.UpgradeHTTP on
// net/http) and the frame codec, plus an epoll loop of our own on
// golang.org/x/sys/unix. An idle connection is a socket registered with
// EPOLLIN|EPOLLRDHUP|EPOLLONESHOT in one of a few epoll instances: it holds
// no goroutine and no read buffer. When its socket turns readable, a worker
// from a small fixed pool reads exactly one frame, answers it, and re-arms
// the socket with EPOLL_CTL_MOD.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/sys/unix"
)

const (
	epollArm = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
	// epMaxPayload bounds a frame (and a fragmented message) from a client.
	epMaxPayload = 1 << 20
	// epFrameTimeout bounds the wait for the rest of a frame whose first
	// bytes made the socket readable.
	epFrameTimeout = 10 * time.Second
)

// epConn is the per-connection state: the conn, its fd and, only while a
// fragmented message is being received, its fragments.
type epConn struct {
	conn   net.Conn
	fd     int
	poller *epPoller
	fragOp ws.OpCode
	frag   []byte
}

// epPoller is one epoll instance with the connections registered in it.
type epPoller struct {
	epfd  int
	mu    sync.Mutex
	conns map[int]*epConn
	work  chan<- *epConn
}

func newEpPoller(work chan<- *epConn) (*epPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &epPoller{epfd: epfd, conns: make(map[int]*epConn), work: work}, nil
}

// add registers c (one-shot); the poller then owns closing it.
func (p *epPoller) add(c *epConn) error {
	p.mu.Lock()
	p.conns[c.fd] = c
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: epollArm, Fd: int32(c.fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, c.fd)
		p.mu.Unlock()
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// rearm re-enables the one-shot registration of c after it was handled.
func (p *epPoller) rearm(c *epConn) error {
	ev := unix.EpollEvent{Events: epollArm, Fd: int32(c.fd)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}

// remove unregisters and closes c.
func (p *epPoller) remove(c *epConn) {
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	p.mu.Lock()
	delete(p.conns, c.fd)
	p.mu.Unlock()
	_ = c.conn.Close()
	track.closed()
}

// loop waits for readiness and hands ready connections to the workers.
// With EPOLLONESHOT a connection is reported once until re-armed, so at most
// one worker ever handles a given connection.
func (p *epPoller) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			panic(fmt.Sprintf("epoll_wait: %v", err))
		}
		for i := 0; i < n; i++ {
			p.mu.Lock()
			c := p.conns[int(events[i].Fd)]
			p.mu.Unlock()
			if c != nil {
				p.work <- c
			}
		}
	}
}

// handle reads and answers one frame from c, then re-arms or closes it.
func (c *epConn) handle() {
	_ = c.conn.SetReadDeadline(time.Now().Add(epFrameTimeout))
	err := c.readFrame()
	if err == nil {
		_ = c.conn.SetReadDeadline(time.Time{})
		err = c.poller.rearm(c)
	}
	if err != nil {
		c.poller.remove(c)
	}
}

// errClosed ends a connection after a close handshake.
var errClosed = errors.New("closed by peer")

// readFrame reads exactly one frame (no read-ahead, so the rest stays in the
// socket and keeps it readable) and answers it.
func (c *epConn) readFrame() error {
	hdr, err := ws.ReadHeader(c.conn)
	if err != nil {
		return err
	}
	if !hdr.Masked || hdr.Rsv != 0 || hdr.Length > epMaxPayload {
		return c.closeWith(ws.StatusProtocolError)
	}
	payload := make([]byte, hdr.Length)
	if _, err := io.ReadFull(c.conn, payload); err != nil {
		return err
	}
	ws.Cipher(payload, hdr.Mask, 0)

	switch hdr.OpCode {
	case ws.OpPing:
		return ws.WriteFrame(c.conn, ws.NewPongFrame(payload))
	case ws.OpPong:
		return nil
	case ws.OpClose:
		code, _ := ws.ParseCloseFrameData(payload)
		if code.Empty() {
			code = ws.StatusNormalClosure
		}
		_ = ws.WriteFrame(c.conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
		return errClosed
	case ws.OpText, ws.OpBinary:
		if c.frag != nil {
			return c.closeWith(ws.StatusProtocolError)
		}
		if !hdr.Fin {
			c.fragOp, c.frag = hdr.OpCode, payload
			return nil
		}
		return c.message(hdr.OpCode, payload)
	case ws.OpContinuation:
		if c.frag == nil || len(c.frag)+len(payload) > epMaxPayload {
			return c.closeWith(ws.StatusProtocolError)
		}
		c.frag = append(c.frag, payload...)
		if !hdr.Fin {
			return nil
		}
		op, msg := c.fragOp, c.frag
		c.frag = nil
		return c.message(op, msg)
	default:
		return c.closeWith(ws.StatusProtocolError)
	}
}

// message handles one complete data message: text is echoed.
func (c *epConn) message(op ws.OpCode, msg []byte) error {
	if op != ws.OpText {
		return nil
	}
	return wsutil.WriteServerMessage(c.conn, ws.OpText, msg)
}

func (c *epConn) closeWith(code ws.StatusCode) error {
	_ = ws.WriteFrame(c.conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
	return errClosed
}

// connFD returns the socket descriptor behind conn. The descriptor stays
// valid while conn is open; conn is kept referenced by the poller so it is
// not closed by a finalizer.
func connFD(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T has no SyscallConn", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return 0, err
	}
	return fd, nil
}

func serveGobwasEpoll(listen string) error {
	nPollers := runtime.GOMAXPROCS(0)
	nWorkers := 4 * nPollers
	work := make(chan *epConn, 1024)
	for i := 0; i < nWorkers; i++ {
		go func() {
			for c := range work {
				c.handle()
			}
		}()
	}
	pollers := make([]*epPoller, nPollers)
	for i := range pollers {
		p, err := newEpPoller(work)
		if err != nil {
			return err
		}
		pollers[i] = p
		go p.loop()
	}
	var mu sync.Mutex
	next := 0

	hello := []byte(helloMessage)
	return serveHTTP(listen, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			if conn != nil {
				_ = conn.Close()
			}
			return
		}
		fd, err := connFD(conn)
		if err != nil {
			_ = conn.Close()
			return
		}
		if err := wsutil.WriteServerMessage(conn, ws.OpText, hello); err != nil {
			_ = conn.Close()
			return
		}
		mu.Lock()
		p := pollers[next%len(pollers)]
		next++
		mu.Unlock()
		track.opened()
		if err := p.add(&epConn{conn: conn, fd: fd, poller: p}); err != nil {
			_ = conn.Close()
			track.closed()
		}
		// The net/http goroutine ends here; the connection lives on in epoll.
	})
}
