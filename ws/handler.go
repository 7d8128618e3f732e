package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

type connKey struct{}

// FromRequest returns the WebSocket connection of a request served through
// Accept or Require, or nil for plain HTTP.
func FromRequest(r *http.Request) *Conn {
	c, _ := r.Context().Value(connKey{}).(*Conn)
	return c
}

// IsWebSocket reports whether the request was upgraded to a WebSocket.
func IsWebSocket(r *http.Request) bool { return FromRequest(r) != nil }

// Accept serves plain HTTP requests and WebSocket upgrades with the same
// handler. For an upgrade, h runs after the handshake with the connection
// in the request (FromRequest); the connection closes (code 1000) when h
// returns, and a panic in h closes it with 1011. A malformed or
// unsupported upgrade is answered 400, a refused origin 403.
func Accept(h http.Handler, opts ...Option) http.Handler {
	return newConnHandler(h, false, opts)
}

// Require is Accept for handlers that only speak WebSocket: plain HTTP
// requests are answered 400.
func Require(h http.Handler, opts ...Option) http.Handler {
	return newConnHandler(h, true, opts)
}

type connHandler struct {
	h       http.Handler
	require bool
	o       *options

	once    sync.Once
	private *Engine
}

func newConnHandler(h http.Handler, require bool, opts []Option) *connHandler {
	return &connHandler{h: h, require: require, o: resolve(opts)}
}

// engine returns the configured engine or the handler's private one,
// which runs its poll loop and sweeper only while it has connections, so
// it needs no shutdown of its own.
func (a *connHandler) engine() *Engine {
	if a.o.engine != nil {
		return a.o.engine
	}
	a.once.Do(func() {
		a.private = newEngine(EngineConfig{Logger: a.o.logger, SweepInterval: sweepFor(a.o)})
		a.private.private = true
	})
	return a.private
}

// sweepFor picks a sweep interval fine enough for the options' timers.
func sweepFor(o *options) time.Duration {
	d := time.Second
	for _, t := range []time.Duration{o.pingInterval, o.readTimeout} {
		if t > 0 && t/4 < d {
			d = t / 4
		}
	}
	return max(d, 10*time.Millisecond)
}

// AcceptsWebSocket implements Acceptor.
func (a *connHandler) AcceptsWebSocket() bool { return true }

func (a *connHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if FromRequest(r) != nil {
		// Already upgraded above (AcceptAll around a handler that could
		// not be looked into): serve the connection.
		a.h.ServeHTTP(w, r)
		return
	}
	if !IsUpgradeRequest(r) {
		if a.require {
			WriteError(w, http.StatusBadRequest, "websocket_required", "this endpoint only accepts WebSocket connections")
			return
		}
		a.h.ServeHTTP(w, r)
		return
	}
	// The handler runs on a goroutine of the engine's, and this one (net/
	// http's, holding the server's buffers for the connection) returns, so
	// a connection keeps no HTTP state while it lives. Its context ends
	// when the connection does.
	base, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	e := a.engine()
	c, err := upgrade(w, r, e, a.o, nil, cancel)
	if err != nil {
		cancel()
		return
	}
	r = r.WithContext(context.WithValue(base, connKey{}, c))
	started := e.goIfOpen(func() {
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				c.panicked("ServeHTTP", p, true)
			}
			c.Close(CloseNormal, "")
		}()
		a.h.ServeHTTP(hijackedWriter{}, r)
	})
	if !started {
		// The engine began shutting down after the handshake: the
		// handler does not run (Shutdown would not wait for it).
		cancel()
		c.Close(CloseGoingAway, "server shutting down")
	}
}

// hijackedWriter stands in for the ResponseWriter of an upgraded request.
type hijackedWriter struct{}

func (hijackedWriter) Header() http.Header       { return http.Header{} }
func (hijackedWriter) Write([]byte) (int, error) { return 0, http.ErrHijacked }
func (hijackedWriter) WriteHeader(int)           {}

// Upgrade completes the handshake and hands the connection to e, which
// calls h for its events until it closes; it returns without waiting. On
// failure the HTTP error has been written and the error is returned.
// Headers already set on w (cookies, for instance) are sent with the 101
// response.
//
// Upgrade resolves opts on every call, and every connection keeps its own
// copy (about 140 bytes); a handler that upgrades many connections with
// the same options uses an Upgrader.
func Upgrade(w http.ResponseWriter, r *http.Request, e *Engine, h Handler, opts ...Option) (*Conn, error) {
	return NewUpgrader(e, opts...).Upgrade(w, r, h)
}

// Upgrader is Upgrade with its engine and options fixed: they are
// resolved once, and every connection it accepts shares them. Its
// methods are safe for concurrent use.
type Upgrader struct {
	e *Engine
	o *options
}

// NewUpgrader returns an Upgrader that hands connections to e.
func NewUpgrader(e *Engine, opts ...Option) *Upgrader {
	return &Upgrader{e: e, o: resolve(append([]Option{WithEngine(e)}, opts...))}
}

// Upgrade is the package's Upgrade with the Upgrader's engine and
// options.
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request, h Handler) (*Conn, error) {
	if u.e == nil || h == nil {
		return nil, errors.New("ws: Upgrade needs an engine and a handler")
	}
	return upgrade(w, r, u.e, u.o, h, nil)
}

// upgrade completes the handshake; onFinish, if set, is called once the
// connection is gone.
func upgrade(w http.ResponseWriter, r *http.Request, e *Engine, o *options, h Handler, onFinish func()) (*Conn, error) {
	key, err := checkRequest(r, o)
	if err != nil {
		var he *handshakeError
		errors.As(err, &he)
		if he.code == "unsupported_version" {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		// A refused origin is an operator's matter (a missing entry in the
		// allowed list) and is logged at info; malformed upgrades are the
		// client's and stay at debug.
		level := slog.LevelDebug
		if he.status == http.StatusForbidden {
			level = slog.LevelInfo
		}
		o.logger.Log(r.Context(), level, "websocket refused", "status", he.status, "reason", he.msg, "key", he.key, "path", r.URL.Path, "remote", r.RemoteAddr)
		WriteError(w, he.status, he.code, he.msg)
		return nil, err
	}
	e.mu.Lock()
	closing := e.closing
	e.mu.Unlock()
	if closing {
		WriteError(w, http.StatusServiceUnavailable, "shutting_down", "the server is shutting down")
		return nil, ErrEngineClosed
	}
	subprotocol := selectSubprotocol(r, o.subprotocols)
	proto := slices.Index(o.subprotocols, subprotocol) + 1 // 0: none
	if proto > math.MaxUint16 {
		subprotocol, proto = "", 0 // past any real list: not negotiated
	}
	var deflate *deflateParams
	if o.compression {
		deflate = negotiateDeflate(r)
	}
	extra := w.Header().Clone()

	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "hijack_failed", "the connection cannot be upgraded")
		return nil, fmt.Errorf("ws: hijack: %w", err)
	}
	// Bytes the client sent right after its request (it may not wait for
	// the 101) are already in the server's buffer.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
		early = append([]byte(nil), early...)
	}
	nc.SetDeadline(time.Time{}) // undo the server's timeouts
	if !e.cfg.Goroutines {
		// The engine polls the socket itself: net's state for it is
		// dead weight on an idle connection (detach_linux.go).
		nc = detach(nc)
	}

	c := &Conn{nc: nc, eng: e, o: o, h: h, subprotocol: uint16(proto), deflate: deflate.compress(), inflate: deflate != nil, onFinish: onFinish}
	now := time.Now().UnixNano()
	c.lastRead.Store(now)
	c.lastPing.Store(now)
	// Registered before the 101 goes out, so that a Shutdown that starts
	// once the client has its 101 finds the connection and closes it with
	// 1001; the write lock keeps a close frame from going out before the
	// 101.
	c.wmu.Lock()
	if err := e.register(c); err != nil {
		c.wmu.Unlock()
		nc.Close()
		return nil, err
	}
	nc.SetWriteDeadline(time.Now().Add(o.writeTimeout))
	_, err = nc.Write(responseHeader(key, subprotocol, deflate, extra))
	nc.SetWriteDeadline(time.Time{})
	c.wmu.Unlock()
	if err != nil {
		e.unregister(c)
		nc.Close()
		return nil, fmt.Errorf("ws: handshake: %w", err)
	}
	if h != nil {
		func() {
			c.cbmu.Lock()
			defer c.cbmu.Unlock()
			defer c.recoverHandler("OnOpen", true)
			h.OnOpen(c)
		}()
	}
	if len(early) > 0 {
		c.process(early)
	}
	e.startReading(c)
	return c, nil
}

// WriteError writes the JSON error body used across Switchyard:
// {"error": {"code": "...", "message": "..."}}.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": message}})
}
