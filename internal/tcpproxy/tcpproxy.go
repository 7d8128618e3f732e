// Package tcpproxy is a TCP proxy for tests that need to take the network
// away from a client: SetDown cuts every connection and refuses new ones
// until the proxy is up again, and SetBackend moves it to another server
// (a restarted one). Clients connect to Addr and never learn the backend.
package tcpproxy

import (
	"io"
	"net"
	"sync"
)

// Proxy forwards connections to a backend address. Create it with New; it
// runs until Close.
type Proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	backend string
	down    bool
	conns   map[net.Conn]struct{}
}

// New listens on a free loopback port and forwards to backend (which may be
// set later with SetBackend).
func New(backend string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, backend: backend, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

// Addr returns the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetBackend sends the next connections to addr.
func (p *Proxy) SetBackend(addr string) {
	p.mu.Lock()
	p.backend = addr
	p.mu.Unlock()
}

// SetDown(true) cuts every proxied connection (both sides see the TCP
// connection end) and refuses new ones; SetDown(false) accepts them again.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	var cut []net.Conn
	if down {
		for c := range p.conns {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
}

// Close stops the proxy, cuts its connections and waits for its goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.SetDown(true)
	p.wg.Wait()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, backend := p.down, p.backend
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", backend)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, s) {
			continue
		}
		p.wg.Go(func() { p.pipe(c, s) })
	}
}

// track registers a connection pair, unless the proxy went down meanwhile.
func (p *Proxy) track(c, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		c.Close()
		s.Close()
		return false
	}
	p.conns[c] = struct{}{}
	p.conns[s] = struct{}{}
	return true
}

func (p *Proxy) pipe(c, s net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(s, c); s.Close(); c.Close() })
	wg.Go(func() { io.Copy(c, s); s.Close(); c.Close() })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}
