package binding

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// Stream is a resource served as a binding.
type Stream struct {
	// Name is the stream clients address ("app.User").
	Name string
	// Resource is the resource's name.
	Resource string
	// PostSave pushes <stream>.updated#<pk> on creates and updates,
	// PostDelete <stream>.deleted#<pk> on deletes.
	PostSave, PostDelete bool
}

// Config configures the channels-binding handler.
type Config struct {
	Engine  *ws.Engine
	Hub     *hub.Hub
	Options []ws.Option
	Logger  *slog.Logger
	// Resources runs the streams' actions (nil: no resource streams).
	Resources *resource.Service
	// Streams are the resources served as bindings.
	Streams []Stream
	// Events finds the handler of an event that is not a built-in action
	// of a resource stream (channels-binding's custom @bind events),
	// from the event without its #uid ("simple_reflexion.ping"); nil:
	// none, such events are answered "No binding found for <event>".
	Events func(event string) (Custom, bool)
	// Signals, when set, makes each connection a window of the signal
	// service: a custom event that Events does not handle goes to the
	// signal of the same name ("app.User.hello"), with the frame's data as
	// its kwargs, and the signal's access rules; a sync handler's result
	// is reflected (when truthy), a queued one's handler may trigger back.
	// Signals pushed to the window arrive as {"event": <signal>, "data":
	// <kwargs>}.
	Signals *signal.Service
	// Verifier identifies connections from their token; Proxy asks the
	// application about those without a valid one. Both may be nil.
	Verifier *auth.Verifier
	Proxy    *auth.Proxy
	// Anonymous accepts connections without a user (channels-binding's
	// ANONYMOUS_CONNECTION_ALLOWED); false refuses them with 403.
	Anonymous bool
	// InvertedOrdering applies search's order as channels-binding does:
	// "-field" ascending, "field" descending.
	InvertedOrdering bool
	// MaxRetrieveIDs bounds the ids of one retrieve (default 100).
	MaxRetrieveIDs int
	// MaxConnections refuses upgrades with 503 once the engine holds that
	// many connections (0: no limit).
	MaxConnections int
	// MessagesPerSecond limits each connection's frames (0: no limit;
	// bursts of twice the rate); a frame over it is answered with an
	// error frame and dropped.
	MessagesPerSecond int
	// RequestTimeout bounds the work of one frame (default 10 s).
	RequestTimeout time.Duration
	// MaxReplyBytes bounds one reply frame (limits.max_outgoing_message_size,
	// default 4 MiB): a bigger reply is answered with an error frame.
	MaxReplyBytes int
}

// Handler serves the channels-binding WebSocket. Create it with New.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	enc     *encoder
	streams map[string]*Stream // by stream name
}

// New returns the channels-binding handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.MaxRetrieveIDs <= 0 {
		cfg.MaxRetrieveIDs = 100
	}
	if cfg.MaxReplyBytes <= 0 {
		cfg.MaxReplyBytes = 4 << 20
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, streams: map[string]*Stream{}}
	byResource := map[string]*Stream{}
	for i := range cfg.Streams {
		st := &cfg.Streams[i]
		h.streams[st.Name] = st
		byResource[st.Resource] = st
	}
	h.enc = &encoder{svc: cfg.Resources, seq: resource.NewSequencer(0), streams: byResource, log: cfg.Logger}
	return h
}

// session is the state of one connection.
type session struct {
	hs       *hub.Session
	who      resource.Actor
	stopKeep func() // ends the connect proxy's refreshes

	// Streams joined by a permitted request: written by the connection's
	// handler calls, read by the hub's broadcasts (EncodeForSession) under
	// smu. smu is taken inside the hub session's lock; nothing calls into
	// the hub while holding it.
	smu     sync.Mutex
	joined  map[string]bool                // stream name → joined
	changes map[string]*resource.LiveQuery // resource collection channel → what the connection is told

	// A token bucket for MessagesPerSecond (handler calls only).
	tokens float64
	filled time.Time
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

// ServeHTTP authenticates and upgrades the request; plain HTTP gets 400.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.MaxConnections > 0 && h.cfg.Engine.Len() >= h.cfg.MaxConnections {
		ws.WriteError(w, http.StatusServiceUnavailable, "too_many_connections", "the server is at its connection limit")
		return
	}
	if !ws.IsUpgradeRequest(r) {
		ws.WriteError(w, http.StatusBadRequest, "websocket_required", r.URL.Path+" only accepts WebSocket connections")
		return
	}
	id := rand.Text()
	p, grant, err := auth.Identify(r.Context(), r, h.cfg.Verifier, h.cfg.Proxy, auth.ConnectionOf(r, id, "websocket", "binding"))
	if err != nil {
		// Refused before the upgrade, logged with the config key behind
		// the check (never the token, nor the query that may carry it).
		code := switchyard.ErrorCode(err)
		h.log.Info("websocket refused", "status", switchyard.HTTPStatus(code), "reason", switchyard.ErrorMessage(err), "key", auth.ConfigKey(err), "path", r.URL.Path, "remote", r.RemoteAddr)
		ws.WriteError(w, switchyard.HTTPStatus(code), string(code), switchyard.ErrorMessage(err))
		return
	}
	if p.User == "" && !h.cfg.Anonymous {
		// channels-binding's DenyConnection: the handshake is refused.
		h.log.Info("websocket refused", "status", http.StatusForbidden, "reason", "anonymous", "key", "binding.anonymous", "path", r.URL.Path, "remote", r.RemoteAddr)
		ws.WriteError(w, http.StatusForbidden, string(switchyard.CodeForbidden), "anonymous connections are not allowed (binding.anonymous)")
		return
	}
	ws.Upgrade(w, r, h.cfg.Engine, socket{h: h, id: id, p: p, grant: grant, remoteAddr: r.RemoteAddr, userAgent: r.UserAgent()}, h.cfg.Options...)
}

// socket adapts the handler to ws.Handler for one connection.
type socket struct {
	h     *Handler
	id    string
	p     auth.Principal
	grant *auth.Grant

	remoteAddr, userAgent string
}

func (s socket) OnOpen(c *ws.Conn) {
	hb := s.h.cfg.Hub
	hs := hb.Connect(s.id, hub.Principal{User: s.p.User, Info: s.p.Info, Expires: s.p.Expires}, connWriter{c}, s.h.enc)
	sess := &session{hs: hs, who: resource.As(s.p.User), stopKeep: func() {}}
	hs.SetValue(sess)
	c.SetValue(sess)
	if s.grant != nil && s.h.cfg.Proxy != nil {
		sess.stopKeep = s.h.cfg.Proxy.Keep(hs, s.grant)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.RequestTimeout)
	defer cancel()
	// channels-binding joins every connection to __all__ and a user's to
	// user.<pk>; the token's (or the application's) channels are groups.
	groups := []string{AllGroup, ConnGroup(hs.ID())}
	if s.p.User != "" {
		groups = append(groups, UserGroup(s.p.User))
	}
	groups = append(groups, s.p.Channels...)
	for _, g := range groups {
		if err := hb.SubscribeSilent(ctx, hs, GroupChannel(g)); err != nil {
			s.h.log.Warn("binding: joining a group failed", "conn", hs.ID(), "group", g, "err", err)
		}
	}
	if sig := s.h.cfg.Signals; sig != nil {
		err := sig.Attach(ctx, signal.Window{
			ID: hs.ID(), User: s.p.User, Info: s.p.Info, Transport: "binding",
			RemoteAddr: s.remoteAddr, UserAgent: s.userAgent,
			Claims: s.p.Claims, Topics: s.p.Topics,
			Sender: hs, Encoder: signalEncoder{},
		})
		if err != nil {
			s.h.log.Error("binding: window not attached to signals", "conn", hs.ID(), "err", err)
		}
	}
}

// signalEncoder is the channels-binding wire of pushed signals:
// {"event": <signal>, "data": <kwargs>}, as binding_send pushes.
type signalEncoder struct{}

func (signalEncoder) EncodeSignal(p signal.Push) []byte {
	b, _ := json.Marshal(frameOut{Event: p.Signal, Data: p.Kwargs})
	return b
}

func (s socket) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	sess := c.Value().(*session)
	s.h.handle(sess, data)
}

func (s socket) OnClose(c *ws.Conn, err error) {
	if sess, ok := c.Value().(*session); ok {
		sess.stopKeep()
		if s.h.cfg.Signals != nil {
			s.h.cfg.Signals.Detach(sess.hs.ID())
		}
		s.h.cfg.Hub.Disconnect(sess.hs)
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
