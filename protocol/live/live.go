// Package live speaks Switchyard's native protocol on the /live socket:
// the DCRF multiplexed envelope {"stream": S, "payload": {...}}, where
// resource names and the reserved $session, $channels and $signals are the
// streams.
//
// The package decodes frames, calls the services (the hub for $channels)
// and encodes replies; it holds no rules of its own beyond the session.
// Frames of one connection are handled in order (the ws engine never runs
// two handler calls of one connection at once), and every reply and push
// of a connection goes through its hub session's outbox, so replies and
// publications keep their order.
package live

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// Config configures the /live handler.
type Config struct {
	Engine  *ws.Engine
	Hub     *hub.Hub
	Options []ws.Option
	Logger  *slog.Logger
	// Resources serves the resource streams (nil: none).
	Resources *resource.Service
	// Signals serves the $signals stream and makes each connection a
	// window (nil: none; see signals.go).
	Signals *signal.Service
	// Verifier identifies connections from their token (?token=, the
	// cookie, or Authorization: Bearer) and verifies $session refresh
	// tokens; nil makes every connection anonymous.
	Verifier *auth.Verifier
	// Proxy asks the application who a connection without a valid token
	// is (auth.proxy; nil: off).
	Proxy *auth.Proxy
	// MaxConnections refuses upgrades with 503 once the engine holds that
	// many connections (0: no limit).
	MaxConnections int
	// RequestTimeout bounds the work of one request (default 10 s).
	RequestTimeout time.Duration
	// MessagesPerSecond limits each connection's frames (0: no limit);
	// bursts of up to twice the rate are allowed. A frame over the limit
	// is answered 429 (on its stream, with its request_id) and dropped; the
	// connection stays open.
	MessagesPerSecond int
	// MaxReplyBytes bounds one reply frame (default 4 MiB, as
	// limits.max_outgoing_message_size): a bigger one (an unpaginated
	// list of big records, a long history) is answered 413 instead, and
	// the connection stays open.
	MaxReplyBytes int
	// MaxSearchLength bounds a list's search text, in characters (default
	// 256; longer: 400 naming search).
	MaxSearchLength int
	// MaxCatchUp bounds how many missed changes of one record a
	// subscribe_instance with since replays (default
	// resource.DefaultCatchUpLimit, 100: a few tens of KB for typical
	// records, well inside a session's outbox); past it the client gets the
	// record as it is, with recovered false.
	MaxCatchUp int
}

// Handler serves /live. Create it with New.
type Handler struct {
	cfg Config
	log *slog.Logger
	enc *encoder
	up  *ws.Upgrader // cfg.Engine and cfg.Options, resolved once
}

// New returns the /live handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.MaxReplyBytes <= 0 {
		cfg.MaxReplyBytes = 4 << 20
	}
	if cfg.MaxSearchLength <= 0 {
		cfg.MaxSearchLength = 256
	}
	return &Handler{cfg: cfg, log: cfg.Logger, enc: &encoder{svc: cfg.Resources, seq: resource.NewSequencer(0), log: cfg.Logger},
		up: ws.NewUpgrader(cfg.Engine, cfg.Options...)}
}

// session is the state of one connection, and its ws.Handler: one
// allocation holds what the connection keeps of this protocol (an idle
// connection's memory is mostly such per-connection structs; see
// docs/BENCHMARKS.md, "Memory per idle connection").
type session struct {
	h    *Handler
	hs   *hub.Session
	open *opening // what OnOpen needs; nil after it
	// DCRF instance subscriptions: hub channel → the request_ids
	// subscribed to it (events go out once per request_id). Written by the
	// connection's handler calls, read by the hub's broadcasts. smu is
	// taken inside the hub session's lock (the hub encodes held events
	// under it when a subscribe ends), so nothing calls into the hub while
	// holding smu.
	smu sync.Mutex
	// nsubs counts the entries of instances and lists: the subscriptions
	// this protocol holds over the hub's silent channels, one per
	// request_id (see hub.SubscriptionCounter). It sits after smu to fill
	// what would be padding: an idle connection is mostly such structs.
	nsubs     atomic.Int32
	instances map[string][]*instanceSub
	lists     map[string][]*listSub // collection channel → live queries
	// extra is what only some configurations use, made when first needed
	// (nil with the defaults). Touched only by the connection's handler
	// calls, which never run concurrently. TestSessionSize keeps the
	// session within 64 bytes.
	extra *sessionExtra
}

// sessionExtra is the rarely used part of a session.
type sessionExtra struct {
	// stopKeep ends the connect proxy's refreshes (auth.proxy).
	stopKeep func()
	// The token bucket of limits.messages_per_second: tokens left and
	// when they were counted (unix ns; 0: never).
	tokens float64
	filled int64
}

// extras returns the session's sessionExtra, making it.
func (s *session) extras() *sessionExtra {
	if s.extra == nil {
		s.extra = new(sessionExtra)
	}
	return s.extra
}

// Subscriptions implements hub.SubscriptionCounter.
func (s *session) Subscriptions() int { return int(s.nsubs.Load()) }

// admit checks that the connection may add one resource subscription
// (limits.max_subscriptions, limits.max_subscriptions_per_user).
func (s *session) admit() error { return s.hs.Admit(1) }

// sendReply queues a reply frame, or, when it is over MaxReplyBytes, the
// 413 of tooBig in its place: one reply must not hold more than the
// outgoing message limit.
func (h *Handler) sendReply(sess *session, frame []byte, tooBig func(error)) {
	if len(frame) > h.cfg.MaxReplyBytes {
		tooBig(switchyard.Errorf(switchyard.CodeTooLarge, "the reply would be %d bytes, over the %d of limits.max_outgoing_message_size: ask for less (paginate with limit and offset)", len(frame), h.cfg.MaxReplyBytes))
		return
	}
	sess.hs.Send(frame)
}

// checkSearch refuses a search text over MaxSearchLength characters.
func (h *Handler) checkSearch(search string) error {
	if utf8.RuneCountInString(search) > h.cfg.MaxSearchLength {
		return &resource.ValidationError{Fields: map[string][]string{"search": {fmt.Sprintf("Ensure this value has at most %d characters (limits.max_search_length).", h.cfg.MaxSearchLength)}}}
	}
	return nil
}

// allow takes a token from the session's bucket.
func (s *session) allow(rate int, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	burst := float64(2 * rate)
	ns := now.UnixNano()
	b := s.extras()
	if b.filled == 0 {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+float64(ns-b.filled)/1e9*float64(rate))
	}
	b.filled = ns
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// ServeHTTP authenticates and upgrades the request; plain HTTP gets 400.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.MaxConnections > 0 && h.cfg.Engine.Len() >= h.cfg.MaxConnections {
		msg := fmt.Sprintf("the server is at its connection limit (%d, limits.max_connections)", h.cfg.MaxConnections)
		h.log.Info("websocket refused", "status", http.StatusServiceUnavailable, "reason", msg, "key", "limits.max_connections", "path", r.URL.Path, "remote", r.RemoteAddr)
		ws.WriteError(w, http.StatusServiceUnavailable, "too_many_connections", msg)
		return
	}
	if !ws.IsUpgradeRequest(r) {
		ws.WriteError(w, http.StatusBadRequest, "websocket_required", "/live only accepts WebSocket connections")
		return
	}
	id := rand.Text()
	p, grant, err := auth.Identify(r.Context(), r, h.cfg.Verifier, h.cfg.Proxy, auth.ConnectionOf(r, id, "websocket", "live"))
	if err != nil {
		// Refused before the upgrade: 401 with the reason (the same in the
		// log with the config key behind the check; never the token, nor
		// the query that may carry it), the application's 401/403, or 503
		// when it did not answer.
		code := switchyard.ErrorCode(err)
		h.log.Info("websocket refused", "status", switchyard.HTTPStatus(code), "reason", switchyard.ErrorMessage(err), "key", auth.ConfigKey(err), "path", r.URL.Path, "remote", r.RemoteAddr)
		ws.WriteError(w, switchyard.HTTPStatus(code), string(code), switchyard.ErrorMessage(err))
		return
	}
	h.up.Upgrade(w, r, &session{h: h,
		open: &opening{id: id, p: p, grant: grant, remoteAddr: r.RemoteAddr, userAgent: r.UserAgent()}})
}

// opening is what a connection's OnOpen needs from its request; the
// session drops it once open.
type opening struct {
	id                    string
	p                     auth.Principal
	grant                 *auth.Grant // the connect proxy's answer, kept fresh while open
	remoteAddr, userAgent string
}

// OnOpen implements ws.Handler.
func (sess *session) OnOpen(c *ws.Conn) {
	o := sess.open
	sess.open = nil
	h, hb := sess.h, sess.h.cfg.Hub
	hs := hb.Connect(o.id, hub.Principal{User: o.p.User, Info: o.p.Info, Expires: o.p.Expires,
		Transport: "websocket", Protocol: "live", RemoteAddr: o.remoteAddr}, connWriter{c}, h.enc)
	sess.hs = hs
	if o.grant != nil && h.cfg.Proxy != nil {
		sess.extras().stopKeep = h.cfg.Proxy.Keep(hs, o.grant)
	}
	hs.SetValue(sess)
	h.attachSignals(sess, o)
	hs.Send(encode("$session", map[string]any{"action": "connected", "client_id": hs.ID(), "user": hs.User()}))
	// The token's channels are joined server-side; each is announced
	// with a "subscribed" push (or an error frame for that channel).
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
	defer cancel()
	for _, ch := range o.p.Channels {
		if err := hb.SubscribeServer(ctx, hs, ch); err != nil {
			h.replyError(sess, "$channels", request{Action: "subscribe", Channel: ch}, err)
		}
	}
}

// OnMessage implements ws.Handler.
func (sess *session) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	if !sess.allow(sess.h.cfg.MessagesPerSecond, time.Now()) {
		// Answer on the frame's stream with its request_id when they can be
		// read, so the client's pending request fails instead of hanging.
		var env struct {
			Stream  string `json:"stream"`
			Payload struct {
				Action    string          `json:"action"`
				RequestID json.RawMessage `json:"request_id"`
			} `json:"payload"`
		}
		json.Unmarshal(data, &env)
		sess.h.replyError(sess, orSession(env.Stream), request{Action: env.Payload.Action, RequestID: env.Payload.RequestID},
			switchyard.Errorf(switchyard.CodeRateLimited, "over %d messages per second: frame dropped", sess.h.cfg.MessagesPerSecond))
		return
	}
	sess.h.handle(sess, data)
}

// OnClose implements ws.Handler.
func (sess *session) OnClose(c *ws.Conn, err error) {
	if sess.hs != nil {
		if sess.extra != nil && sess.extra.stopKeep != nil {
			sess.extra.stopKeep()
		}
		sess.h.detachSignals(sess)
		sess.h.cfg.Hub.Disconnect(sess.hs)
	}
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

// envelope is a frame on the wire.
type envelope struct {
	Stream  string          `json:"stream"`
	Payload json.RawMessage `json:"payload"`
}

// request holds the fields of request payloads.
type request struct {
	Action    string                     `json:"action"`
	RequestID json.RawMessage            `json:"request_id"`
	Channel   string                     `json:"channel"`
	Since     json.RawMessage            `json:"since"` // {offset, epoch} on $channels, a change-log seq on resource streams
	Data      json.RawMessage            `json:"data"`
	Limit     *int                       `json:"limit"`
	Offset    *int                       `json:"offset"`
	PK        json.RawMessage            `json:"pk"`
	ID        json.RawMessage            `json:"id"`
	Filter    map[string]json.RawMessage `json:"filter"`
	Things    []int64                    `json:"things"`
	Token     string                     `json:"token"`
	Reverse   bool                       `json:"reverse"`
}

func (h *Handler) handle(sess *session, data []byte) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		h.replyError(sess, "$session", request{}, switchyard.Errorf(switchyard.CodeBadRequest, "frame is not a JSON object of the form {\"stream\": ..., \"payload\": {...}}"))
		return
	}
	var req request
	if len(env.Payload) == 0 || env.Payload[0] != '{' {
		h.replyError(sess, orSession(env.Stream), req, switchyard.Errorf(switchyard.CodeBadRequest, "payload must be a JSON object"))
		return
	}
	if err := json.Unmarshal(env.Payload, &req); err != nil {
		// Keep what could be read (request_id) for the error reply.
		var partial struct {
			Action    string          `json:"action"`
			RequestID json.RawMessage `json:"request_id"`
		}
		json.Unmarshal(env.Payload, &partial)
		req = request{Action: partial.Action, RequestID: partial.RequestID}
		h.replyError(sess, orSession(env.Stream), req, switchyard.Errorf(switchyard.CodeBadRequest, "invalid payload: %s", jsonProblem(err)))
		return
	}
	if env.Stream == "" {
		h.replyError(sess, "$session", req, switchyard.Errorf(switchyard.CodeBadRequest, "missing stream"))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
	defer cancel()
	switch env.Stream {
	case "$session":
		h.session(sess, req)
	case "$channels":
		h.channels(ctx, sess, req)
	case signalsStream:
		h.signals(ctx, sess, req, env.Payload)
	default:
		if h.cfg.Resources != nil {
			if _, ok := h.cfg.Resources.Schema(env.Stream); ok {
				h.resourceRecovering(ctx, sess, env.Stream, req)
				return
			}
		}
		h.replyError(sess, env.Stream, req, switchyard.Errorf(switchyard.CodeNotFound, "unknown stream %q", env.Stream))
	}
}

// resourceRecovering runs a resource action. A panic in application code
// under it (a resource hook) answers the request with a 500 in the
// envelope and is logged with its stack; the connection stays open.
func (h *Handler) resourceRecovering(ctx context.Context, sess *session, stream string, req request) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("live: panic in a resource action", "stream", stream, "action", req.Action, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			sess.hs.Send(encode(stream, dcrfReply{
				Errors:         []any{switchyard.ErrorMessage(nil)},
				Action:         req.Action,
				ResponseStatus: http.StatusInternalServerError,
				RequestID:      requestID(req),
			}))
		}
	}()
	h.resource(ctx, sess, stream, req)
}

// session runs a $session action.
func (h *Handler) session(sess *session, req request) {
	const stream = "$session"
	if req.Action != "refresh" {
		h.replyError(sess, stream, req, switchyard.Errorf(switchyard.CodeMethodNotAllowed, "unknown action %q on $session", req.Action))
		return
	}
	if h.cfg.Verifier == nil {
		h.replyError(sess, stream, req, switchyard.Errorf(switchyard.CodeBadRequest, "tokens are not configured on this server"))
		return
	}
	if req.Token == "" {
		h.replyError(sess, stream, req, switchyard.Errorf(switchyard.CodeBadRequest, "token is required"))
		return
	}
	claims, err := h.cfg.Verifier.Verify(req.Token)
	if err != nil {
		h.replyError(sess, stream, req, err)
		return
	}
	if claims.User != sess.hs.User() {
		h.replyError(sess, stream, req, switchyard.Errorf(switchyard.CodeForbidden, "a refresh token must be for the same user"))
		return
	}
	sess.hs.SetExpires(claims.Expires)
	var expires any
	if !claims.Expires.IsZero() {
		expires = claims.Expires.Unix()
	}
	sess.hs.Send(h.ok(stream, req, map[string]any{"expires": expires}))
}

func orSession(stream string) string {
	if stream == "" {
		return "$session"
	}
	return stream
}

// jsonProblem turns a decoding error into a message that names the field.
func jsonProblem(err error) string {
	if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
		return "field " + te.Field + " must be " + te.Type.String()
	}
	return "malformed JSON"
}

// channels runs a $channels action.
func (h *Handler) channels(ctx context.Context, sess *session, req request) {
	const stream = "$channels"
	hb := h.cfg.Hub
	switch req.Action {
	case "subscribe":
		since, err := channelSince(req)
		if err != nil {
			h.replyError(sess, stream, req, err)
			return
		}
		err = hb.Subscribe(ctx, sess.hs, req.Channel, since, func(res hub.SubscribeResult) []byte {
			return h.ok(stream, req, res)
		})
		if err != nil {
			h.replyError(sess, stream, req, err)
		}
	case "unsubscribe":
		if err := hb.Unsubscribe(ctx, sess.hs, req.Channel); err != nil {
			h.replyError(sess, stream, req, err)
			return
		}
		sess.hs.Send(h.ok(stream, req, map[string]string{"channel": req.Channel}))
	case "publish":
		sp, err := hb.Publish(ctx, sess.hs, req.Channel, req.Data)
		if err != nil {
			h.replyError(sess, stream, req, err)
			return
		}
		sess.hs.Send(h.ok(stream, req, sp))
	case "presence":
		clients, err := hb.Presence(ctx, sess.hs, req.Channel)
		if err != nil {
			h.replyError(sess, stream, req, err)
			return
		}
		sess.hs.Send(h.ok(stream, req, map[string]any{"clients": clients}))
	case "history":
		limit := 0
		if req.Limit != nil {
			limit = *req.Limit
		}
		if limit < 0 {
			h.replyError(sess, stream, req, switchyard.Errorf(switchyard.CodeBadRequest, "limit must be >= 0"))
			return
		}
		since, err := channelSince(req)
		if err != nil {
			h.replyError(sess, stream, req, err)
			return
		}
		pubs, pos, err := hb.History(ctx, sess.hs, req.Channel, limit, since, req.Reverse)
		if err != nil {
			h.replyError(sess, stream, req, err)
			return
		}
		h.sendReply(sess, h.ok(stream, req, map[string]any{"publications": pubs, "offset": pos.Offset, "epoch": pos.Epoch}), func(err error) { h.replyError(sess, stream, req, err) })
	default:
		h.replyError(sess, stream, req, switchyard.Errorf(switchyard.CodeMethodNotAllowed, "unknown action %q on $channels", req.Action))
	}
}

// channelSince decodes the since of a $channels request, a stream
// position {offset, epoch}; nil when absent.
func channelSince(req request) (*switchyard.StreamPosition, error) {
	if len(req.Since) == 0 {
		return nil, nil
	}
	// Decoded as a field of the payload, so a wrong type is reported as
	// it always was: "field since must be ...".
	var v struct {
		Since *switchyard.StreamPosition `json:"since"`
	}
	if err := json.Unmarshal(append(append([]byte(`{"since":`), req.Since...), '}'), &v); err != nil {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "invalid payload: %s", jsonProblem(err))
	}
	return v.Since, nil
}

func requestID(req request) json.RawMessage {
	if len(req.RequestID) == 0 {
		return json.RawMessage("null")
	}
	return req.RequestID
}

// ok encodes a successful reply.
func (h *Handler) ok(stream string, req request, data any) []byte {
	return encode(stream, dcrfReply{Errors: []any{}, Data: data, Action: req.Action, ResponseStatus: 200, RequestID: requestID(req)})
}

// replyError answers a request with an error in the envelope; the
// connection stays open. Internal errors are logged, not shown.
func (h *Handler) replyError(sess *session, stream string, req request, err error) {
	code := switchyard.ErrorCode(err)
	if code == switchyard.CodeInternal {
		h.log.Error("live: request failed", "stream", stream, "action", req.Action, "err", err)
	}
	sess.hs.Send(encode(stream, dcrfReply{
		Errors:         []any{switchyard.ErrorMessage(err)},
		Action:         req.Action,
		ResponseStatus: switchyard.HTTPStatus(code),
		RequestID:      requestID(req),
	}))
}

func encode(stream string, payload any) []byte {
	b, err := json.Marshal(struct {
		Stream  string `json:"stream"`
		Payload any    `json:"payload"`
	}{stream, payload})
	if err != nil {
		// Every payload here is built from JSON-safe values.
		panic("live: encode: " + err.Error())
	}
	return b
}

// encoder is the hub.Encoder (and hub.SessionEncoder, for resource
// events) of /live; one value serves every session.
type encoder struct {
	svc *resource.Service // nil: no resources
	seq *resource.Sequencer
	log *slog.Logger
}

type pushMessage struct {
	Action  string                 `json:"action"`
	Channel string                 `json:"channel"`
	Offset  uint64                 `json:"offset"`
	Epoch   string                 `json:"epoch"`
	Data    json.RawMessage        `json:"data"`
	Info    *switchyard.ClientInfo `json:"info,omitempty"`
}

type pushPresence struct {
	Action  string                `json:"action"`
	Channel string                `json:"channel"`
	Info    switchyard.ClientInfo `json:"info"`
}

func (*encoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	return encode("$channels", pushMessage{Action: "message", Channel: ch, Offset: pub.Offset, Epoch: sp.Epoch, Data: pub.Data, Info: pub.Info})
}

func (*encoder) EncodeJoin(ch string, info switchyard.ClientInfo) []byte {
	return encode("$channels", pushPresence{Action: "join", Channel: ch, Info: info})
}

func (*encoder) EncodeLeave(ch string, info switchyard.ClientInfo) []byte {
	return encode("$channels", pushPresence{Action: "leave", Channel: ch, Info: info})
}

type pushSubscribed struct {
	Action string `json:"action"`
	hub.SubscribeResult
}

func (*encoder) EncodeSubscribed(res hub.SubscribeResult) []byte {
	return encode("$channels", pushSubscribed{Action: "subscribed", SubscribeResult: res})
}

func (*encoder) EncodeUnsubscribed(ch string) []byte {
	return encode("$channels", map[string]string{"action": "unsubscribed", "channel": ch})
}
