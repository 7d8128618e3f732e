package main

// gws: github.com/lxzan/gws with its own upgrader on net/http; the
// idiomatic shape from its README: Upgrade in the handler, then ReadLoop in
// a goroutine of its own, events delivered to a handler type.

import (
	"net/http"

	"github.com/lxzan/gws"
)

// gwsHandler is the event handler: hello on open, echo text, pong on ping.
// Close frames are answered by gws itself.
type gwsHandler struct{ gws.BuiltinEventHandler }

func (gwsHandler) OnOpen(c *gws.Conn) {
	track.opened()
	_ = c.WriteString(helloMessage)
}

func (gwsHandler) OnClose(*gws.Conn, error) { track.closed() }

func (gwsHandler) OnPing(c *gws.Conn, payload []byte) { _ = c.WritePong(payload) }

func (gwsHandler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	if m.Opcode == gws.OpcodeText {
		_ = c.WriteMessage(gws.OpcodeText, m.Bytes())
	}
}

// serveGws is tuned for memory: messages handled in the read goroutine
// (ParallelEnabled=false) and a 512-byte read buffer instead of 4 KiB.
func serveGws(listen string) error {
	return serveGwsWith(listen, &gws.ServerOption{
		ParallelEnabled:  false,
		ReadBufferSize:   512,
		CheckUtf8Enabled: true,
	})
}

// serveGwsDefault uses the library defaults (4 KiB read buffer).
func serveGwsDefault(listen string) error {
	return serveGwsWith(listen, nil)
}

func serveGwsWith(listen string, opt *gws.ServerOption) error {
	up := gws.NewUpgrader(gwsHandler{}, opt)
	return serveHTTP(listen, func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		go c.ReadLoop() // OnOpen runs first, inside ReadLoop
	})
}
