// Package live speaks Switchyard's native protocol on the /live socket:
// the DCRF multiplexed envelope {"stream": S, "payload": {...}}, where
// resource names and the reserved $session, $channels and $signals are the
// streams.
//
// The package decodes frames, calls the services and encodes replies; it
// holds no rules of its own beyond the session. Frames of one connection
// are handled in order (the ws engine never runs two handler calls of one
// connection at once).
package live

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/ws"
)

// Config configures the /live handler.
type Config struct {
	Engine  *ws.Engine
	Options []ws.Option
	Logger  *slog.Logger
	// MaxConnections refuses upgrades with 503 once the engine holds that
	// many connections (0: no limit).
	MaxConnections int
}

// Handler serves /live. Create it with New.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns the /live handler.
func New(cfg Config) *Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log}
}

// session is the state of one connection.
type session struct {
	clientID string
	user     string
}

// ServeHTTP upgrades the request; plain HTTP gets 400.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.MaxConnections > 0 && h.cfg.Engine.Len() >= h.cfg.MaxConnections {
		ws.WriteError(w, http.StatusServiceUnavailable, "too_many_connections", "the server is at its connection limit")
		return
	}
	if !isUpgrade(r) {
		ws.WriteError(w, http.StatusBadRequest, "websocket_required", "/live only accepts WebSocket connections")
		return
	}
	ws.Upgrade(w, r, h.cfg.Engine, socket{h}, h.cfg.Options...)
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		if bytes.EqualFold(bytes.TrimSpace([]byte(v)), []byte("websocket")) {
			return true
		}
	}
	return false
}

// socket adapts the handler to ws.Handler.
type socket struct{ h *Handler }

func (s socket) OnOpen(c *ws.Conn) {
	sess := &session{clientID: rand.Text()}
	c.SetValue(sess)
	s.h.send(c, "$session", map[string]any{"action": "connected", "client_id": sess.clientID, "user": sess.user})
}

func (s socket) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	sess := c.Value().(*session)
	s.h.handle(c, sess, data)
}

func (s socket) OnClose(c *ws.Conn, err error) {}

// envelope is a frame on the wire.
type envelope struct {
	Stream  string          `json:"stream"`
	Payload json.RawMessage `json:"payload"`
}

// request holds the fields every request payload shares.
type request struct {
	Action    string          `json:"action"`
	RequestID json.RawMessage `json:"request_id"`
}

// reply is a DCRF-shaped response payload; the field order is DCRF's.
type reply struct {
	Errors         []any           `json:"errors"`
	Data           any             `json:"data"`
	Action         string          `json:"action"`
	ResponseStatus int             `json:"response_status"`
	RequestID      json.RawMessage `json:"request_id"`
}

func (h *Handler) handle(c *ws.Conn, sess *session, data []byte) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		h.replyError(c, "$session", request{}, switchyard.Errorf(switchyard.CodeBadRequest, "frame is not a JSON object of the form {\"stream\": ..., \"payload\": {...}}"))
		return
	}
	var req request
	if len(env.Payload) == 0 || env.Payload[0] != '{' || json.Unmarshal(env.Payload, &req) != nil {
		stream := env.Stream
		if stream == "" {
			stream = "$session"
		}
		h.replyError(c, stream, req, switchyard.Errorf(switchyard.CodeBadRequest, "payload must be a JSON object"))
		return
	}
	if env.Stream == "" {
		h.replyError(c, "$session", req, switchyard.Errorf(switchyard.CodeBadRequest, "missing stream"))
		return
	}
	switch env.Stream {
	case "$session":
		h.replyError(c, env.Stream, req, switchyard.Errorf(switchyard.CodeMethodNotAllowed, "unknown action %q on $session", req.Action))
	default:
		h.replyError(c, env.Stream, req, switchyard.Errorf(switchyard.CodeNotFound, "unknown stream %q", env.Stream))
	}
}

// replyError answers a request with an error in the envelope; the
// connection stays open.
func (h *Handler) replyError(c *ws.Conn, stream string, req request, err error) {
	rid := req.RequestID
	if len(rid) == 0 {
		rid = json.RawMessage("null")
	}
	h.send(c, stream, reply{
		Errors:         []any{switchyard.ErrorMessage(err)},
		Action:         req.Action,
		ResponseStatus: switchyard.HTTPStatus(switchyard.ErrorCode(err)),
		RequestID:      rid,
	})
}

func (h *Handler) send(c *ws.Conn, stream string, payload any) {
	b, err := json.Marshal(struct {
		Stream  string `json:"stream"`
		Payload any    `json:"payload"`
	}{stream, payload})
	if err != nil {
		h.log.Error("live: encode reply", "err", err)
		return
	}
	if err := c.Send(context.Background(), b); err != nil {
		h.log.Debug("live: send failed", "err", fmt.Sprint(err))
	}
}
