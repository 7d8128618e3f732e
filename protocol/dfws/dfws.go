package dfws

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// Heartbeat is the text frame df_websockets.min.js sends every minute;
// the server answers it verbatim.
const Heartbeat = "--heartbeat--"

// KeyCookie and URLCookie are the cookies of the bootstrap: the window
// key, read when the socket connects, and the socket's URL, read by the
// JS client to open it.
const (
	KeyCookie = "dfwskey"
	URLCookie = "dfwsurl"
)

// DefaultPath is df_websockets' WEBSOCKET_URL.
const DefaultPath = "/ws/"

// Identity is who a connection is, as Config.Identify resolves it before
// the upgrade.
type Identity struct {
	// Principal is the connection's user, token info and claims: signal
	// access rules apply to it.
	Principal auth.Principal
	// Keep, when not nil, is started with the connection's hub session
	// once it is open and stopped when it closes: the connect proxy
	// (auth.proxy) refreshes an answer that expires with it.
	Keep func(s *hub.Session) (stop func())
}

// IdentifyFunc resolves who the connection of r is; clientID is the id
// the connection will have. An error refuses the upgrade with its
// switchyard.Error status and message (401, 403, 503...).
type IdentifyFunc func(r *http.Request, clientID string) (Identity, error)

// Config configures the df_websockets wire.
type Config struct {
	Engine *ws.Engine
	Hub    *hub.Hub
	// Signals receives the calls and carries the triggers; required.
	Signals *signal.Service
	Options []ws.Option
	Logger  *slog.Logger
	// Identify resolves who a connection is (nil: every connection is
	// anonymous): its token (auth.Verifier.FromRequest) or, without one,
	// the connect proxy (auth.proxy) when it is configured.
	Identify IdentifyFunc
	// Path is where the socket is served (default DefaultPath); it ends
	// the URL built from a bootstrap's host.
	Path string
	// URL is the WebSocket URL the dfwsurl cookie carries, such as
	// wss://example.com/ws/; "" builds it from each bootstrap's host.
	URL string
	// Cookie sets the attributes of the bootstrap's cookies.
	Cookie Cookie
	// UserModel is the <app_label>.<model_name> of the USER topic
	// (default "auth.user": -auth.user.<pk>).
	UserModel string
	// MaxConnections refuses upgrades with 503 once the engine holds that
	// many connections (0: no limit).
	MaxConnections int
	// MessagesPerSecond limits each connection's frames (0: no limit),
	// with bursts of twice the rate; a frame over it is dropped and
	// logged (this wire never answers a call).
	MessagesPerSecond int
	// RequestTimeout bounds the work of one frame (a sync handler
	// included) and of the window lookup at connect (default 10 s).
	RequestTimeout time.Duration
}

// Handler serves the df_websockets socket and makes its bootstrap
// cookies. Create it with New.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Signals == nil || cfg.Hub == nil || cfg.Engine == nil {
		return nil, errors.New("dfws: Signals, Hub and Engine are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.UserModel == "" {
		cfg.UserModel = "auth.user"
	}
	if !modelRE.MatchString(cfg.UserModel) {
		return nil, fmt.Errorf("dfws: UserModel %q must be <app_label>.<model_name>", cfg.UserModel)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if err := cfg.Cookie.check(); err != nil {
		return nil, err
	}
	if cfg.URL != "" {
		if _, err := checkURL(cfg.URL); err != nil {
			return nil, fmt.Errorf("dfws: URL: %w", err)
		}
	}
	return &Handler{cfg: cfg, log: cfg.Logger}, nil
}

// ServeHTTP identifies the connection and upgrades it; plain HTTP gets
// 400.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.MaxConnections > 0 && h.cfg.Engine.Len() >= h.cfg.MaxConnections {
		msg := fmt.Sprintf("the server is at its connection limit (%d, limits.max_connections)", h.cfg.MaxConnections)
		h.log.Info("websocket refused", "status", http.StatusServiceUnavailable, "reason", msg, "key", "limits.max_connections", "path", r.URL.Path, "remote", r.RemoteAddr)
		ws.WriteError(w, http.StatusServiceUnavailable, "too_many_connections", msg)
		return
	}
	if !ws.IsUpgradeRequest(r) {
		ws.WriteError(w, http.StatusBadRequest, "websocket_required", h.cfg.Path+" only accepts WebSocket connections (df_websockets)")
		return
	}
	id := rand.Text()
	var who Identity
	if h.cfg.Identify != nil {
		var err error
		if who, err = h.cfg.Identify(r, id); err != nil {
			code := switchyard.ErrorCode(err)
			h.log.Info("websocket refused", "status", switchyard.HTTPStatus(code), "reason", switchyard.ErrorMessage(err), "key", auth.ConfigKey(err), "path", r.URL.Path, "remote", r.RemoteAddr)
			ws.WriteError(w, switchyard.HTTPStatus(code), string(code), switchyard.ErrorMessage(err))
			return
		}
	}
	ws.Upgrade(w, r, h.cfg.Engine, socket{
		h: h, id: id, who: who, key: windowKey(r),
		remoteAddr: r.RemoteAddr, userAgent: r.UserAgent(),
	}, h.cfg.Options...)
}

// windowKey returns the dfwskey cookie, or "" when there is none or it
// cannot be a window key (empty, over signal.MaxNameLength bytes, or
// holding control characters): such a connection has no window key, as
// one without the cookie.
func windowKey(r *http.Request) string {
	c, err := r.Cookie(KeyCookie)
	if err != nil || c.Value == "" || len(c.Value) > signal.MaxNameLength {
		return ""
	}
	for _, b := range []byte(c.Value) {
		if b < 0x20 || b == 0x7f {
			return ""
		}
	}
	return c.Value
}

// socket adapts the handler to ws.Handler for one connection.
type socket struct {
	h                     *Handler
	id, key               string
	who                   Identity
	remoteAddr, userAgent string
}

// session is the state of one connection.
type session struct {
	hs       *hub.Session
	key      string
	stopKeep func()
	// A token bucket for MessagesPerSecond, touched only by the
	// connection's handler calls (never concurrent).
	tokens float64
	filled time.Time
}

func (s socket) OnOpen(c *ws.Conn) {
	p := s.who.Principal
	hs := s.h.cfg.Hub.Connect(s.id, hub.Principal{User: p.User, Info: p.Info, Expires: p.Expires}, connWriter{c}, hubEncoder{})
	sess := &session{hs: hs, key: s.key, stopKeep: func() {}}
	hs.SetValue(sess)
	c.SetValue(sess)
	if s.who.Keep != nil {
		sess.stopKeep = s.who.Keep(hs)
	}
	// The window's topics are the ones the bootstrap stored under its
	// key (none for a missing or unknown key: accepted all the same, as
	// df_websockets does).
	ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.RequestTimeout)
	defer cancel()
	err := s.h.cfg.Signals.Attach(ctx, signal.Window{
		ID: s.id, Key: s.key, User: p.User, Info: p.Info, Transport: "dfws",
		RemoteAddr: s.remoteAddr, UserAgent: s.userAgent, Claims: p.Claims, Topics: p.Topics,
		Sender: hs, Encoder: pushEncoder{},
	})
	if err != nil {
		// Without its window the socket would receive nothing: close it,
		// and the client comes back in 3 s.
		s.h.log.Error("dfws: window not attached", "conn", s.id, "err", err)
		c.Close(ws.CloseInternalError, "the window could not be attached")
		return
	}
	s.h.log.Debug("dfws: connected", "conn", s.id, "user", p.User, "window_key", s.key != "")
}

func (s socket) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	sess, ok := c.Value().(*session)
	if !ok {
		return
	}
	if !sess.allow(s.h.cfg.MessagesPerSecond, time.Now()) {
		s.h.log.Debug("dfws: frame dropped", "conn", s.id, "reason", fmt.Sprintf("over %d messages per second (limits.messages_per_second)", s.h.cfg.MessagesPerSecond))
		return
	}
	s.h.handle(sess, typ, data)
}

func (s socket) OnClose(c *ws.Conn, err error) {
	if sess, ok := c.Value().(*session); ok {
		sess.stopKeep()
		s.h.cfg.Signals.Detach(sess.hs.ID())
		s.h.cfg.Hub.Disconnect(sess.hs)
	}
}

// allow takes a token from the session's bucket.
func (s *session) allow(rate int, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	burst := float64(2 * rate)
	if s.filled.IsZero() {
		s.tokens = burst
	} else {
		s.tokens = min(burst, s.tokens+now.Sub(s.filled).Seconds()*float64(rate))
	}
	s.filled = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// call is a client frame: {"signal": name, "opts": {...}}.
type call struct {
	Signal    json.RawMessage `json:"signal"`
	Opts      json.RawMessage `json:"opts"`
	ETA       json.RawMessage `json:"eta"`
	Expires   json.RawMessage `json:"expires"`
	Countdown json.RawMessage `json:"countdown"`
}

// handle runs one frame. Nothing is ever answered but the heartbeat:
// df_websockets' client has no place for an answer, so a call that is
// not run (unknown, not allowed, invalid) is logged only.
func (h *Handler) handle(sess *session, typ ws.MessageType, data []byte) {
	conn := sess.hs.ID()
	if typ != ws.Text {
		h.log.Debug("dfws: binary frame ignored", "conn", conn)
		return
	}
	if string(data) == Heartbeat {
		sess.hs.Send([]byte(Heartbeat))
		return
	}
	var m call
	if err := json.Unmarshal(data, &m); err != nil || len(bytes.TrimSpace(data)) == 0 || bytes.TrimSpace(data)[0] != '{' {
		h.log.Debug("dfws: frame ignored", "conn", conn, "reason", "not a JSON object")
		return
	}
	var name string
	if m.Signal == nil {
		h.log.Debug("dfws: frame ignored", "conn", conn, "reason", "no signal")
		return
	}
	if json.Unmarshal(m.Signal, &name) != nil || name == "" {
		h.log.Info("dfws: call not run", "conn", conn, "reason", "signal must be a non-empty string")
		return
	}
	if m.Opts == nil {
		h.log.Info("dfws: call not run", "conn", conn, "signal", name, "reason", "no opts")
		return
	}
	if m.ETA != nil || m.Expires != nil || m.Countdown != nil {
		h.log.Info("dfws: call not run", "conn", conn, "signal", name, "reason", "eta, expires and countdown are not accepted from a client")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
	defer cancel()
	res, err := h.cfg.Signals.Call(ctx, conn, name, m.Opts)
	if err != nil {
		level := slog.LevelInfo
		switch switchyard.ErrorCode(err) {
		case switchyard.CodeRateLimited:
			level = slog.LevelDebug // one line per dropped call would be a flood
		case switchyard.CodeInternal:
			level = slog.LevelError
		}
		h.log.Log(ctx, level, "dfws: call not run", "conn", conn, "signal", name, "reason", switchyard.ErrorMessage(err), "err", err)
		return
	}
	if res.Sync {
		h.log.Debug("dfws: call ran", "conn", conn, "signal", name, "result_bytes", len(res.Result))
		return
	}
	h.log.Debug("dfws: call queued", "conn", conn, "signal", name, "jobs", res.JobIDs)
}

// connWriter is a hub.Writer over a WebSocket connection.
type connWriter struct{ c *ws.Conn }

func (w connWriter) WriteFrames(ctx context.Context, frames [][]byte) error {
	return w.c.SendBatch(ctx, frames...)
}

// TryWriteFrames implements hub.TryWriter: the hub's writer pool writes
// without waiting for the client.
func (w connWriter) TryWriteFrames(frames [][]byte) (bool, error) {
	return w.c.TrySendBatch(frames...)
}

// AddToGroup implements hub.GroupWriter: a writer worker's io_uring ring
// writes the batches of many connections with one system call.
func (w connWriter) AddToGroup(g hub.WriteGroup, frames [][]byte) bool {
	r, ok := g.(*ws.WriteRing)
	return ok && r.Add(w.c, frames...)
}

func (w connWriter) Close(code int, reason string) error { return w.c.Close(code, reason) }

// pushEncoder is the wire of a pushed signal: {"signal", "opts",
// "signal_id"}. One value serves every connection.
type pushEncoder struct{}

type push struct {
	Signal   string          `json:"signal"`
	Opts     json.RawMessage `json:"opts"`
	SignalID string          `json:"signal_id"`
}

func (pushEncoder) EncodeSignal(p signal.Push) []byte {
	b, err := json.Marshal(push{Signal: p.Signal, Opts: p.Kwargs, SignalID: p.SignalID})
	if err != nil {
		// Kwargs is the service's canonical JSON object.
		panic("dfws: encode: " + err.Error())
	}
	return b
}

// hubEncoder is the hub.Encoder of this wire. df_websockets has no
// channels: a channel the server API subscribes one of its connections
// to sends it nothing.
type hubEncoder struct{}

func (hubEncoder) EncodePublication(string, switchyard.Publication, switchyard.StreamPosition) []byte {
	return nil
}
func (hubEncoder) EncodeJoin(string, switchyard.ClientInfo) []byte  { return nil }
func (hubEncoder) EncodeLeave(string, switchyard.ClientInfo) []byte { return nil }
func (hubEncoder) EncodeSubscribed(hub.SubscribeResult) []byte      { return nil }
func (hubEncoder) EncodeUnsubscribed(string) []byte                 { return nil }
