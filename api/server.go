// Package api holds Switchyard's HTTP APIs for application backends: the
// server API (POST /api/server/<method>, authenticated with an API key).
// Handlers decode JSON, call the services and encode JSON; the rules live
// in the services. Errors are {"error": {"code": "…", "message": "…"}}
// with a 4xx status, never a stack trace.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/cluster"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// ServerConfig configures the server API.
type ServerConfig struct {
	Hub *hub.Hub
	// Cluster carries subscribe, unsubscribe, disconnect, refresh, info
	// and channels to every process. Required.
	Cluster *cluster.Node
	// Keys are the accepted API keys (Authorization: apikey <key>). With
	// none, every call is refused (401).
	Keys []config.Secret
	// MaxBody bounds request bodies (default 1 MiB; larger: 413).
	MaxBody int64
	// Connections reports the open connections of this process.
	Connections func() int
	// Started is when the server started (for uptime_seconds).
	Started time.Time
	Logger  *slog.Logger
	// Signals adds trigger and windows (nil: not served).
	Signals *signal.Service
	// Queue adds queue_stats, queue_jobs, queue_retry and queue_discard
	// (nil: not served).
	Queue *queue.Queue
	// Binding enables binding_send (the channels-binding wire is on).
	Binding bool
	// NewWindow, when set, answers windows without a window: a new
	// window key for a page (the df_websockets bootstrap, windows.go).
	NewWindow func(ctx context.Context, req NewWindowRequest) (any, error)
}

// Server is the server API handler.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	methods map[string]func(*http.Request, *decoder) (any, error)
}

// NewServer returns the server API; mount it at /api/server/.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.methods = map[string]func(*http.Request, *decoder) (any, error){
		"publish":        s.publish,
		"broadcast":      s.broadcast,
		"presence":       s.presence,
		"presence_stats": s.presenceStats,
		"history":        s.history,
		"subscribe":      s.subscribe,
		"unsubscribe":    s.unsubscribe,
		"disconnect":     s.disconnect,
		"refresh":        s.refresh,
		"channels":       s.channels,
		"info":           s.info,
		"binding_send":   s.bindingSend, // binding.go
	}
	s.handleLocal()
	s.addSignalMethods()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `apikey realm="switchyard"`)
		writeError(w, switchyard.Errorf(switchyard.CodeUnauthorized, "a valid API key is required (Authorization: apikey <key>)"))
		return
	}
	name := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/server/"), "/")
	method, ok := s.methods[name]
	if !ok {
		writeError(w, switchyard.Errorf(switchyard.CodeNotFound, "unknown server API method %q", name))
		return
	}
	if r.Method != http.MethodPost && !(readOnly[name] && r.Method == http.MethodGet) {
		allow, use := http.MethodPost, "use POST"
		if readOnly[name] {
			allow, use = "GET, POST", "use GET or POST"
		}
		w.Header().Set("Allow", allow)
		writeError(w, switchyard.Errorf(switchyard.CodeMethodNotAllowed, "%s", use))
		return
	}
	d, err := readBody(w, r, s.cfg.MaxBody)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := method(r, d)
	if err != nil {
		if switchyard.ErrorCode(err) == switchyard.CodeInternal {
			s.log.Error("server API failed", "method", name, "err", err)
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// readOnly are the methods that take no body and change nothing: they
// answer GET as well as POST.
var readOnly = map[string]bool{"channels": true, "info": true}

// authorized compares the key with every configured key in constant time.
func (s *Server) authorized(r *http.Request) bool {
	key, ok := apiKey(r)
	return ok && validKey(s.cfg.Keys, key)
}

// apiKey returns the key of an "Authorization: apikey <key>" header.
func apiKey(r *http.Request) (string, bool) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "apikey") || key == "" {
		return "", false
	}
	return key, true
}

// validKey compares a key with every configured key in constant time.
func validKey(keys []config.Secret, key string) bool {
	match := 0
	for _, k := range keys {
		match |= subtle.ConstantTimeCompare([]byte(k), []byte(key))
	}
	return match == 1
}

// decoder holds a request body as fields, so errors can name them.
type decoder struct {
	fields map[string]json.RawMessage
}

func readBody(w http.ResponseWriter, r *http.Request, max int64) (*decoder, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, switchyard.Errorf(switchyard.CodeTooLarge, "request body over %d bytes (limits.max_request_body)", max)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, switchyard.Errorf(switchyard.CodeBadRequest, "request body not received in time (limits.read_timeout)")
		}
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "cannot read the request body")
	}
	d := &decoder{fields: map[string]json.RawMessage{}}
	if len(strings.TrimSpace(string(body))) == 0 {
		return d, nil
	}
	if err := json.Unmarshal(body, &d.fields); err != nil {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "the body must be a JSON object")
	}
	return d, nil
}

// field decodes a field into v; required fields must be present.
func (d *decoder) field(name string, v any, required bool) error {
	raw, ok := d.fields[name]
	if !ok || string(raw) == "null" {
		if required {
			return switchyard.Errorf(switchyard.CodeBadRequest, "field %q is required", name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return switchyard.Errorf(switchyard.CodeBadRequest, "field %q has the wrong type", name)
	}
	return nil
}

// only refuses fields the method does not know.
func (d *decoder) only(names ...string) error {
	for k := range d.fields {
		known := false
		for _, n := range names {
			known = known || k == n
		}
		if !known {
			return switchyard.Errorf(switchyard.CodeBadRequest, "unknown field %q", k)
		}
	}
	return nil
}

func (d *decoder) channel() (string, error) {
	var ch string
	if err := d.field("channel", &ch, true); err != nil {
		return "", err
	}
	return ch, notReserved(ch)
}

// notReserved refuses the server's own channels (403): "$resource:…"
// and every other name starting with "$" carry events whose shape their
// subscribers rely on, so the server API may not publish into them, nor
// subscribe or unsubscribe users there behind the protocols' back.
func notReserved(ch string) error {
	if strings.HasPrefix(ch, "$") {
		return switchyard.Errorf(switchyard.CodeForbidden, "channel %q is reserved for the server: channels starting with $ cannot be used through the server API", ch)
	}
	return nil
}

func (d *decoder) data() (json.RawMessage, error) {
	raw, ok := d.fields["data"]
	if !ok {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q is required", "data")
	}
	return raw, nil
}

func (s *Server) publish(r *http.Request, d *decoder) (any, error) {
	if err := d.only("channel", "data"); err != nil {
		return nil, err
	}
	ch, err := d.channel()
	if err != nil {
		return nil, err
	}
	data, err := d.data()
	if err != nil {
		return nil, err
	}
	return s.cfg.Hub.Publish(r.Context(), nil, ch, data)
}

type broadcastResult struct {
	Channel string `json:"channel"`
	Offset  uint64 `json:"offset"`
	Epoch   string `json:"epoch"`
}

func (s *Server) broadcast(r *http.Request, d *decoder) (any, error) {
	if err := d.only("channels", "data"); err != nil {
		return nil, err
	}
	var chans []string
	if err := d.field("channels", &chans, true); err != nil {
		return nil, err
	}
	if len(chans) == 0 {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must list at least one channel", "channels")
	}
	for _, ch := range chans {
		if err := notReserved(ch); err != nil {
			return nil, err // before publishing anything
		}
	}
	data, err := d.data()
	if err != nil {
		return nil, err
	}
	out := make([]broadcastResult, 0, len(chans))
	for _, ch := range chans {
		sp, err := s.cfg.Hub.Publish(r.Context(), nil, ch, data)
		if err != nil {
			return nil, fmt.Errorf("channel %q: %w", ch, err)
		}
		out = append(out, broadcastResult{Channel: ch, Offset: sp.Offset, Epoch: sp.Epoch})
	}
	return map[string]any{"publications": out}, nil
}

func (s *Server) presence(r *http.Request, d *decoder) (any, error) {
	if err := d.only("channel"); err != nil {
		return nil, err
	}
	ch, err := d.channel()
	if err != nil {
		return nil, err
	}
	clients, err := s.cfg.Hub.Presence(r.Context(), nil, ch)
	if err != nil {
		return nil, err
	}
	return map[string]any{"clients": clients}, nil
}

func (s *Server) presenceStats(r *http.Request, d *decoder) (any, error) {
	if err := d.only("channel"); err != nil {
		return nil, err
	}
	ch, err := d.channel()
	if err != nil {
		return nil, err
	}
	return s.cfg.Hub.PresenceStats(r.Context(), ch)
}

func (s *Server) history(r *http.Request, d *decoder) (any, error) {
	if err := d.only("channel", "limit", "since", "reverse"); err != nil {
		return nil, err
	}
	ch, err := d.channel()
	if err != nil {
		return nil, err
	}
	var limit int
	if err := d.field("limit", &limit, false); err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be >= 0", "limit")
	}
	var since *switchyard.StreamPosition
	if err := d.field("since", &since, false); err != nil {
		return nil, err
	}
	var reverse bool
	if err := d.field("reverse", &reverse, false); err != nil {
		return nil, err
	}
	pubs, pos, err := s.cfg.Hub.History(r.Context(), nil, ch, limit, since, reverse)
	if err != nil {
		return nil, err
	}
	return map[string]any{"publications": pubs, "offset": pos.Offset, "epoch": pos.Epoch}, nil
}

// userAndChannel decodes the {user, channel} of subscribe and
// unsubscribe.
func (d *decoder) userAndChannel() (string, string, error) {
	if err := d.only("user", "channel"); err != nil {
		return "", "", err
	}
	var user string
	if err := d.field("user", &user, true); err != nil {
		return "", "", err
	}
	if user == "" {
		return "", "", switchyard.Errorf(switchyard.CodeBadRequest, "field %q must not be empty", "user")
	}
	ch, err := d.channel()
	return user, ch, err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// writeError maps an error to its status and JSON body; internal errors
// show no detail.
func writeError(w http.ResponseWriter, err error) {
	code := switchyard.ErrorCode(err)
	msg := switchyard.ErrorMessage(err)
	var e *switchyard.Error
	if errors.As(err, &e) && err.Error() != e.Error() {
		// Keep the context a wrapper added (the channel of a broadcast).
		msg = strings.TrimSuffix(err.Error(), e.Error()) + e.Message
	}
	ws.WriteError(w, switchyard.HTTPStatus(code), string(code), msg)
}
