package main

// switchyard-engine: the project's own ws package in event style
// (ws.Upgrade on a ws.Engine: epoll, no goroutine per idle connection), as
// Switchyard's /live uses it. switchyard-accept: the same package in
// handler style (ws.Accept: the handler goroutine waits in Messages).

import (
	"context"
	"net/http"

	"github.com/switchyardhq/switchyard/ws"
)

type echoEvents struct{}

func (echoEvents) OnOpen(c *ws.Conn) {
	track.opened()
	c.Send(context.Background(), []byte("hello"))
}

func (echoEvents) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	if typ == ws.Text {
		c.Send(context.Background(), data)
	}
}

func (echoEvents) OnClose(c *ws.Conn, err error) { track.closed() }

func serveSwitchyardEngine(listen string) error {
	engine, err := ws.NewEngine(ws.EngineConfig{})
	if err != nil {
		return err
	}
	opts := []ws.Option{ws.CheckOrigin(func(*http.Request) bool { return true }), ws.PingInterval(0), ws.ReadTimeout(0)}
	return serveHTTP(listen, func(w http.ResponseWriter, r *http.Request) {
		ws.Upgrade(w, r, engine, echoEvents{}, opts...)
	})
}

func serveSwitchyardAccept(listen string) error {
	h := ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ws.FromRequest(r)
		track.opened()
		defer track.closed()
		c.Send(r.Context(), []byte("hello"))
		for m := range c.Messages(r.Context()) {
			c.Send(r.Context(), m)
		}
	}), ws.CheckOrigin(func(*http.Request) bool { return true }), ws.PingInterval(0), ws.ReadTimeout(0))
	return serveHTTP(listen, h.ServeHTTP)
}
