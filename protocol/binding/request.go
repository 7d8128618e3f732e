package binding

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
)

// Request is one event a client sent, as handlers see it.
type Request struct {
	// Event is the event as received, #uid included: every reply and
	// error frame of the request carries it.
	Event string
	// PureEvent is Event without its #uid, trimmed: "<stream>.<action>".
	PureEvent string
	// Stream is PureEvent without its last dot-segment, Action that
	// segment.
	Stream, Action string
	// UID is what followed "#", trimmed ("" when none).
	UID string
	// Data is the frame's data: a JSON object or array; {} when it was
	// absent or anything else, as channels-binding reads it.
	Data json.RawMessage
	// User is the connection's user ("" when anonymous), ClientID its id.
	User, ClientID string

	h    *Handler
	sess *session
}

// Reflect sends {"event", "data"} to the requesting connection
// (channels-binding's request.reflect); event "" is the request's.
func (r *Request) Reflect(event string, data json.RawMessage) {
	if event == "" {
		event = r.Event
	}
	r.h.reply(r.sess, event, data)
}

// SessionEvent is the event that tells a channels-binding client its
// session cookie (the JS client sets the sessionid cookie from it).
const SessionEvent = "sessionid"

// Login tells the requesting connection its new session key, as
// channels-binding's request.login() does after logging the user in:
// {"event": "sessionid", "data": key}. Logging in is the application's
// (Django's) work; a webhook handler can push the same frame with the
// server API's binding_send.
func (r *Request) Login(sessionKey string) {
	b, _ := json.Marshal(sessionKey)
	r.h.reply(r.sess, SessionEvent, json.RawMessage(b))
}

// Logout tells the requesting connection its session ended
// (request.logout()): {"event": "sessionid", "data": null}.
func (r *Request) Logout() {
	r.h.reply(r.sess, SessionEvent, json.RawMessage("null"))
}

// Dispatch sends {"event", "data"} to a stream's group (request.dispatch);
// event "" is the request's.
func (r *Request) Dispatch(ctx context.Context, stream, event string, data json.RawMessage) error {
	if event == "" {
		event = r.Event
	}
	_, err := Send(ctx, r.h.cfg.Hub, Message{Event: event, Data: data, Group: stream})
	return err
}

// Broadcast sends {"event", "data"} to every connection
// (request.broadcast); event "" is the request's.
func (r *Request) Broadcast(ctx context.Context, event string, data json.RawMessage) error {
	if event == "" {
		event = r.Event
	}
	_, err := Send(ctx, r.h.cfg.Hub, Message{Event: event, Data: data, All: true})
	return err
}

// Subscribe joins the requesting connection to a stream's group for the
// rest of its life (request.subscribe).
func (r *Request) Subscribe(ctx context.Context, stream string) {
	r.h.join(ctx, r.sess, stream, r.h.streams[stream])
}

// EventHandler runs a custom event. A result that is not JSON-falsy
// (null, false, 0, "", [], {}) is sent back as {"event": <Event>,
// "data": result}, channels-binding's auto-reflect. An error becomes an
// error frame: ErrNoPermission (or resource.ErrForbidden) "No permision
// for <event>", a *switchyard.Error its message, anything else "internal
// error" (logged).
type EventHandler func(ctx context.Context, r *Request) (json.RawMessage, error)

// Custom is the handler of a custom event, channels-binding's @bind.
type Custom struct {
	// Stream is the stream the event belongs to: a permitted request
	// joins the connection to its group.
	Stream string
	// Allowed decides whether the request is permitted (the binding's
	// has_permission), before the group is joined; nil allows everyone.
	Allowed func(r *Request) bool
	// Handle runs the event.
	Handle EventHandler
}

// ErrNoPermission is the error a handler returns for "No permision for
// <event>".
var ErrNoPermission = errors.New("binding: no permission")

// frameOut is a reply or push.
type frameOut struct {
	Event string `json:"event"`
	Data  any    `json:"data"`
}

// errorOut is an error frame: channels-binding sends no data key.
type errorOut struct {
	Event string `json:"event"`
	Error string `json:"error"`
}

func encodeFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Every frame is built from JSON values.
		panic("binding: encode: " + err.Error())
	}
	return b
}

// reply sends {"event", "data"}, or an error frame in its place when it
// is over MaxReplyBytes: one reply must not hold more than the outgoing
// message limit.
func (h *Handler) reply(sess *session, event string, data any) {
	frame := encodeFrame(frameOut{Event: event, Data: data})
	if len(frame) > h.cfg.MaxReplyBytes {
		h.replyError(sess, event, fmt.Sprintf("the reply would be %d bytes, over the %d of limits.max_outgoing_message_size: ask for less", len(frame), h.cfg.MaxReplyBytes))
		return
	}
	sess.hs.Send(frame)
}

func (h *Handler) replyError(sess *session, event, msg string) {
	sess.hs.Send(encodeFrame(errorOut{Event: event, Error: msg}))
}

// parseFrame reads a frame as channels-binding does: a missing event is
// "error", data that is neither an object nor an array is {}. A frame that
// is not a JSON object, or whose event is not a string, is refused (the
// original drops such frames without a word; an error frame says why, and
// the JS client only logs it).
func parseFrame(data []byte) (*Request, string) {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(data, &in); err != nil || in == nil {
		return nil, `invalid frame: expected a JSON object {"event": "<stream>.<action>", "data": {...}}`
	}
	r := &Request{Event: "error", Data: json.RawMessage(`{}`)}
	if raw, ok := in["event"]; ok {
		if err := json.Unmarshal(raw, &r.Event); err != nil || string(raw) == "null" {
			return nil, "invalid frame: event must be a string"
		}
	}
	if d := bytes.TrimSpace(in["data"]); len(d) > 0 && (d[0] == '{' || d[0] == '[') {
		r.Data = d
	}
	pure, uid, _ := strings.Cut(r.Event, "#")
	r.PureEvent, r.UID = strings.TrimSpace(pure), strings.TrimSpace(uid)
	if i := strings.LastIndexByte(r.PureEvent, '.'); i >= 0 {
		r.Stream, r.Action = r.PureEvent[:i], r.PureEvent[i+1:]
	} else {
		r.Action = r.PureEvent
	}
	return r, ""
}

// handle runs one frame.
func (h *Handler) handle(sess *session, data []byte) {
	req, problem := parseFrame(data)
	if !sess.allow(h.cfg.MessagesPerSecond, time.Now()) {
		event := "error"
		if req != nil {
			event = req.Event
		}
		h.replyError(sess, event, fmt.Sprintf("rate limited: over %d messages per second (limits.messages_per_second); frame dropped", h.cfg.MessagesPerSecond))
		return
	}
	if problem != "" {
		h.replyError(sess, "error", problem)
		return
	}
	req.User, req.ClientID, req.h, req.sess = sess.hs.User(), sess.hs.ID(), h, sess
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
	defer cancel()
	if st := h.streams[req.Stream]; st != nil && h.cfg.Resources != nil {
		if a, ok := actions[req.Action]; ok {
			h.resourceAction(ctx, sess, st, a, req)
			return
		}
	}
	if h.cfg.Events != nil {
		if c, ok := h.cfg.Events(req.PureEvent); ok && c.Handle != nil {
			h.custom(ctx, sess, c, req)
			return
		}
	}
	if sig := h.cfg.Signals; sig != nil {
		if _, ok := sig.Signals()[req.PureEvent]; ok {
			h.signal(ctx, sess, sig, req)
			return
		}
	}
	h.replyError(sess, req.Event, "No binding found for "+req.Event)
}

// custom runs a custom event: permission, the stream's group, then the
// handler, whose truthy result is reflected.
func (h *Handler) custom(ctx context.Context, sess *session, c Custom, req *Request) {
	if c.Allowed != nil && !c.Allowed(req) {
		h.replyError(sess, req.Event, "No permision for "+req.Event)
		return
	}
	if c.Stream != "" {
		h.join(ctx, sess, c.Stream, h.streams[c.Stream])
	}
	out, err := c.Handle(ctx, req)
	if err != nil {
		h.fail(sess, req, err)
		return
	}
	if truthy(out) {
		h.reply(sess, req.Event, out)
	}
}

// signal runs a custom event through the signal of its name: the
// signal's access rules and argument schema apply; a sync handler's
// truthy result is reflected, a queued call answers nothing (its handler
// may trigger back to the window).
func (h *Handler) signal(ctx context.Context, sess *session, sig *signal.Service, req *Request) {
	res, err := sig.Call(ctx, sess.hs.ID(), req.PureEvent, req.Data)
	switch {
	case err == nil:
	case switchyard.ErrorCode(err) == switchyard.CodeForbidden:
		h.replyError(sess, req.Event, "No permision for "+req.Event) // sic, as custom events answer
		return
	default:
		h.fail(sess, req, err)
		return
	}
	if res.Sync && truthy(res.Result) {
		h.reply(sess, req.Event, res.Result)
	}
}

// truthy reports whether a JSON value is true for Python.
func truthy(v json.RawMessage) bool {
	switch s := string(bytes.TrimSpace(v)); s {
	case "", "null", "false", `""`, "[]", "{}":
		return false
	default:
		var f float64
		if json.Unmarshal(v, &f) == nil {
			return f != 0
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(v, &obj) == nil {
			return len(obj) > 0
		}
		var arr []json.RawMessage
		if json.Unmarshal(v, &arr) == nil {
			return len(arr) > 0
		}
		return true
	}
}

// failure is an error with the text an error frame shows.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func failf(format string, args ...any) error { return &failure{fmt.Sprintf(format, args...)} }

// fail answers a request with an error frame. The texts stand in for the
// Python exceptions channels-binding sends (a traceback's last line);
// internal errors are logged, never shown.
func (h *Handler) fail(sess *session, req *Request, err error) {
	var f *failure
	var ve *resource.ValidationError
	switch {
	case errors.Is(err, ErrNoPermission), errors.Is(err, resource.ErrForbidden):
		h.replyError(sess, req.Event, "No permision for "+req.Event) // sic: the original's spelling, kept for byte-compat
	case errors.As(err, &f):
		h.replyError(sess, req.Event, f.msg)
	case errors.As(err, &ve):
		b, _ := json.Marshal(ve.Fields)
		h.replyError(sess, req.Event, "ValidationError: "+string(b))
	case switchyard.ErrorCode(err) != switchyard.CodeInternal:
		h.replyError(sess, req.Event, switchyard.ErrorMessage(err))
	default:
		h.log.Error("binding: request failed", "event", req.Event, "conn", sess.hs.ID(), "err", err)
		h.replyError(sess, req.Event, "internal error")
	}
}
