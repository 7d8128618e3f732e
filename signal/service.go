package signal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
)

// NameRE is what a signal name must match: dotted identifiers, as
// df_websockets' signal paths.
var NameRE = regexp.MustCompile(`^[_a-zA-Z]\w*(\.[_a-zA-Z]\w*)*$`)

// MaxNameLength bounds signal names, topics, window keys and users.
const MaxNameLength = 200

// Queue is what the service needs from the job queues (*queue.Queue).
type Queue interface {
	Enqueue(ctx context.Context, p queue.Params) (int64, error)
	Handle(kind string, fn queue.HandlerFunc) error
	Config(name string) (config.Queue, bool)
}

// Bus carries triggers and window changes to the other processes of a
// cluster. Publish must reach every other process's Service.Receive; it
// need not reach this one (this process delivers to its own windows
// directly).
type Bus interface {
	Publish(ctx context.Context, msg []byte) error
}

// Config configures a Service.
type Config struct {
	// Queue runs async handlers and delayed triggers; required.
	Queue Queue
	// Signals are the settings and the signals declared in the file (each
	// registered with its webhook handler).
	Signals config.Signals
	// Bus reaches the other processes; nil: this process only.
	Bus Bus
	// Windows keeps what the application set for window keys until their
	// windows connect (Signals.WindowTTL); nil: a MemoryWindows (this
	// process only).
	Windows WindowStore
	// HTTPClient makes webhook calls (default: a client that does not
	// follow redirects, a redirect being a failed attempt, and keeps
	// Signals.WebhookIdleConns connections per host open between calls).
	HTTPClient *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Job kinds the service runs on the queue.
const (
	kindCall    = "signal.call"
	kindTrigger = "signal.trigger"
)

// Handler runs a call. Its result is answered to the caller for a sync
// signal and ignored otherwise; an error (or a panic) fails the call: a
// sync call answers 500, a queued one is retried.
type Handler func(ctx context.Context, c *Call) (any, error)

// Options declare how a handler may be called.
type Options struct {
	// Allowed is who may call it from a client (config.Signal.Allowed);
	// "" is server_side: never.
	Allowed string
	// Args and ExtraArgs are the argument schema (config.Signal).
	Args      []config.SignalArg
	ExtraArgs string
	// Queue runs the handler's jobs ("" is "default").
	Queue string
	// Sync runs the handler during the call and answers its result.
	Sync bool
}

// Call is one call of a handler.
type Call struct {
	// Signal is the name called.
	Signal string
	// Kwargs is the validated JSON object of arguments.
	Kwargs json.RawMessage
	// Window is the calling window.
	Window WindowInfo
	// Job is the job running the call; nil for a sync call.
	Job *JobInfo
	// IdempotencyKey is the same for every attempt of this handler's
	// call, and different for any other call or handler.
	IdempotencyKey string

	svc *Service
}

// Trigger sends a signal to windows (see Service.Trigger).
func (c *Call) Trigger(ctx context.Context, t Trigger) (TriggerResult, error) {
	return c.svc.Trigger(ctx, t)
}

// Reply triggers a signal to the calling window only.
func (c *Call) Reply(ctx context.Context, signal string, kwargs json.RawMessage) (TriggerResult, error) {
	return c.svc.Trigger(ctx, Trigger{Signal: signal, To: Target{Windows: []string{c.Window.ClientID}}, Kwargs: kwargs})
}

// WindowInfo describes the calling window to handlers and webhooks.
type WindowInfo struct {
	ClientID   string          `json:"client_id"`
	WindowKey  string          `json:"window_key"`
	User       string          `json:"user"`
	Info       json.RawMessage `json:"info,omitempty"`
	Transport  string          `json:"transport"`
	RemoteAddr string          `json:"remote_addr"`
	UserAgent  string          `json:"user_agent"`
	// df_websockets' WindowInfo fields, so a handler ported from it finds
	// them under their names: from the session's claims (a token's, or
	// what the connect proxy answered: docs/django.md). UserPK is User;
	// IsActive is true for a user unless the claim says false; Perms is
	// never null.
	UserPK       string   `json:"user_pk"`
	Username     string   `json:"username"`
	IsSuperuser  bool     `json:"is_superuser"`
	IsStaff      bool     `json:"is_staff"`
	IsActive     bool     `json:"is_active"`
	CSRFCookie   string   `json:"csrf_cookie"`
	Perms        []string `json:"perms"`
	UserSet      bool     `json:"user_set"`
	LanguageCode string   `json:"language_code"`
}

// JobInfo identifies the job and attempt running a call.
type JobInfo struct {
	ID      int64 `json:"id"`
	Attempt int   `json:"attempt"`
}

// CallResult is the answer to a client call.
type CallResult struct {
	// Sync is set when a sync handler ran; Result is then its value.
	Sync   bool
	Result json.RawMessage
	// JobIDs are the jobs queued, one per async handler.
	JobIDs []int64
}

type handler struct {
	fn     Handler
	opts   Options
	schema *schema
	sync   bool
}

// Service is the signal service. Create it with New.
type Service struct {
	cfg     Config
	log     *slog.Logger
	maxArgs int
	rate    int
	ttl     time.Duration

	rmu      sync.RWMutex
	handlers map[string][]*handler

	mu      sync.RWMutex
	windows map[string]*window              // by client id
	byKey   map[string]map[*window]struct{} // by window key (when not the id)
	byUser  map[string]map[*window]struct{}
	byTopic map[string]map[*window]struct{}
	// gen counts the window updates applied here: Attach reads the store
	// outside mu and retries when an update came in between.
	gen uint64
}

// New builds the service, registers the file's signals with their
// webhook handlers, and registers its job kinds on the queue (call it
// before the queue starts).
func New(cfg Config) (*Service, error) {
	if cfg.Queue == nil {
		return nil, errors.New("signal: Queue is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Transport:     webhookTransport(cfg.Signals.WebhookIdleConns),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := &Service{
		cfg:      cfg,
		log:      cfg.Logger,
		maxArgs:  int(cfg.Signals.MaxKwargsBytes),
		rate:     cfg.Signals.CallsPerSecond,
		ttl:      time.Duration(cfg.Signals.WindowTTL),
		handlers: map[string][]*handler{},
		windows:  map[string]*window{},
		byKey:    map[string]map[*window]struct{}{},
		byUser:   map[string]map[*window]struct{}{},
		byTopic:  map[string]map[*window]struct{}{},
	}
	if cfg.Windows == nil {
		s.cfg.Windows = NewMemoryWindows(cfg.Now)
	}
	if s.maxArgs <= 0 {
		s.maxArgs = 64 << 10
	}
	if s.ttl <= 0 {
		s.ttl = 10 * time.Hour
	}
	for _, d := range cfg.Signals.Declared {
		if d.Webhook == "" {
			return nil, fmt.Errorf("signal: %s: a declared signal needs a webhook", d.Name)
		}
		if len(cfg.Signals.WebhookSecret) < 16 {
			return nil, errors.New("signal: webhooks need Signals.WebhookSecret (at least 16 bytes)")
		}
		err := s.Register(d.Name, s.webhook(d.Webhook), Options{Allowed: d.Allowed, Args: d.Args, ExtraArgs: d.ExtraArgs, Queue: d.Queue, Sync: d.Sync})
		if err != nil {
			return nil, err
		}
	}
	if err := cfg.Queue.Handle(kindCall, s.runCall); err != nil {
		return nil, fmt.Errorf("signal: %w", err)
	}
	if err := cfg.Queue.Handle(kindTrigger, s.runTrigger); err != nil {
		return nil, fmt.Errorf("signal: %w", err)
	}
	return s, nil
}

// Register adds a handler under a name; several handlers may share one
// (each with its own options). A call runs every handler that admits the
// caller and whose schema the arguments fit. Register handlers in the
// same order on every start: a queued job names its handler by position.
func (s *Service) Register(name string, h Handler, o Options) error {
	if !NameRE.MatchString(name) || len(name) > MaxNameLength {
		return fmt.Errorf("signal: name %q must match %s (at most %d characters)", name, NameRE, MaxNameLength)
	}
	if h == nil {
		return fmt.Errorf("signal: %s: nil handler", name)
	}
	if o.Allowed == "" || o.Allowed == config.AccessNone {
		o.Allowed = config.AccessServerSide
	}
	if !validAccess(o.Allowed) {
		return fmt.Errorf("signal: %s: unknown access %q", name, o.Allowed)
	}
	if o.ExtraArgs == "" {
		o.ExtraArgs = config.SignalExtraReject
	}
	if o.ExtraArgs != config.SignalExtraReject && o.ExtraArgs != config.SignalExtraAccept {
		return fmt.Errorf("signal: %s: ExtraArgs must be reject or accept", name)
	}
	if o.Queue == "" {
		o.Queue = config.DefaultQueue
	}
	if _, ok := s.cfg.Queue.Config(o.Queue); !ok && !o.Sync {
		return fmt.Errorf("signal: %s: unknown queue %q", name, o.Queue)
	}
	sc, err := compileSchema(o.Args, o.ExtraArgs)
	if err != nil {
		return fmt.Errorf("signal: %s: %w", name, err)
	}
	s.rmu.Lock()
	s.handlers[name] = append(s.handlers[name], &handler{fn: h, opts: o, schema: sc, sync: o.Sync})
	s.rmu.Unlock()
	return nil
}

// Signals returns the registered names with their handler count.
func (s *Service) Signals() map[string]int {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	out := make(map[string]int, len(s.handlers))
	for n, hs := range s.handlers {
		out[n] = len(hs)
	}
	return out
}

// Call is a client's call of a signal from its window (attached with
// Attach). It answers: 404 (CodeNotFound) for an unknown name, 403 when
// no handler admits the caller, 400 (an *ArgsError naming each bad
// argument) when the arguments fit no admitting handler's schema, 413
// over Signals.MaxKwargsBytes, 429 over Signals.CallsPerSecond. Sync
// handlers run now and the first one's result is answered; each other
// handler gets a durable job on its queue.
func (s *Service) Call(ctx context.Context, windowID, name string, kwargs json.RawMessage) (CallResult, error) {
	s.mu.RLock()
	w := s.windows[windowID]
	s.mu.RUnlock()
	if w == nil {
		return CallResult{}, switchyard.Errorf(switchyard.CodeUnavailable, "this connection cannot call signals")
	}
	if !w.allow(s.rate, s.cfg.Now()) {
		return CallResult{}, switchyard.Errorf(switchyard.CodeRateLimited, "over %d signal calls per second (signals.calls_per_second): call dropped", s.rate)
	}
	if len(kwargs) > s.maxArgs {
		return CallResult{}, switchyard.Errorf(switchyard.CodeTooLarge, "kwargs over %d bytes (signals.max_kwargs_bytes)", s.maxArgs)
	}
	args, err := parseKwargs(kwargs)
	if err != nil {
		return CallResult{}, err
	}
	s.rmu.RLock()
	hs := s.handlers[name]
	s.rmu.RUnlock()
	if len(hs) == 0 {
		return CallResult{}, switchyard.Errorf(switchyard.CodeNotFound, "unknown signal %q", name)
	}
	info := w.info()
	var allowed []int
	for i, h := range hs {
		if w.admits(h.opts.Allowed) {
			allowed = append(allowed, i)
		}
	}
	if len(allowed) == 0 {
		return CallResult{}, forbidden(name, hs[0].opts.Allowed, info.User)
	}
	var valid []int
	var firstBad *ArgsError
	for _, i := range allowed {
		if bad := hs[i].schema.validate(args); bad != nil {
			if firstBad == nil {
				firstBad = bad
			}
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 0 {
		return CallResult{}, firstBad
	}
	callID := uuid4()
	var res CallResult
	for _, i := range valid {
		h := hs[i]
		canon := h.schema.canonical(args)
		key := fmt.Sprintf("%s.%d", callID, i)
		if h.sync {
			out, err := s.runSync(ctx, h, &Call{Signal: name, Kwargs: canon, Window: info, IdempotencyKey: key, svc: s})
			if err != nil {
				return CallResult{}, err
			}
			if !res.Sync {
				res.Sync, res.Result = true, out
			}
			continue
		}
		payload, _ := json.Marshal(callJob{Signal: name, Handler: i, Kwargs: canon, Window: info, Key: key})
		id, err := s.cfg.Queue.Enqueue(ctx, queue.Params{Queue: h.opts.Queue, Kind: kindCall, Payload: payload})
		if err != nil {
			return CallResult{}, fmt.Errorf("signal: %s: %w", name, err)
		}
		res.JobIDs = append(res.JobIDs, id)
	}
	return res, nil
}

func forbidden(name, access, user string) error {
	switch {
	case access == config.AccessServerSide:
		return switchyard.Errorf(switchyard.CodeForbidden, "signal %q cannot be called from a client", name)
	case access == config.AccessAuthenticated && user == "":
		return switchyard.Errorf(switchyard.CodeForbidden, "signal %q needs an authenticated user", name)
	}
	return switchyard.Errorf(switchyard.CodeForbidden, "signal %q is not allowed for this connection", name)
}

// parseKwargs reads kwargs as a JSON object (absent or null: empty).
func parseKwargs(kwargs json.RawMessage) (map[string]json.RawMessage, error) {
	args := map[string]json.RawMessage{}
	t := bytes.TrimSpace(kwargs)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return args, nil
	}
	if t[0] != '{' || json.Unmarshal(t, &args) != nil {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "kwargs must be a JSON object")
	}
	return args, nil
}

// runSync runs a sync handler within its queue's timeout; a panic is a
// 500 for the caller and a log line with the stack.
func (s *Service) runSync(ctx context.Context, h *handler, c *Call) (out json.RawMessage, err error) {
	timeout := time.Minute
	if qc, ok := s.cfg.Queue.Config(h.opts.Queue); ok {
		timeout = time.Duration(qc.Timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("signal handler panicked", "signal", c.Signal, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			out, err = nil, switchyard.Errorf(switchyard.CodeInternal, "signal handler failed")
		}
	}()
	v, err := h.fn(ctx, c)
	if err != nil {
		s.log.Error("signal handler failed", "signal", c.Signal, "err", err)
		var se *switchyard.Error
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, switchyard.Errorf(switchyard.CodeInternal, "signal handler failed")
	}
	if raw, ok := v.(json.RawMessage); ok {
		if len(raw) == 0 {
			return json.RawMessage("null"), nil
		}
		if !json.Valid(raw) {
			return nil, fmt.Errorf("signal: %s: handler returned invalid JSON", c.Signal)
		}
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("signal: %s: result: %w", c.Signal, err)
	}
	return b, nil
}

// callJob is the payload of a queued call.
type callJob struct {
	Signal  string          `json:"signal"`
	Handler int             `json:"handler"`
	Kwargs  json.RawMessage `json:"kwargs"`
	Window  WindowInfo      `json:"window"`
	Key     string          `json:"idempotency_key"`
}

// runCall is the job of an async handler.
func (s *Service) runCall(ctx context.Context, j queue.Job) error {
	var cj callJob
	if err := json.Unmarshal(j.Payload, &cj); err != nil {
		return fmt.Errorf("signal: bad job payload: %w", err)
	}
	s.rmu.RLock()
	hs := s.handlers[cj.Signal]
	s.rmu.RUnlock()
	if cj.Handler < 0 || cj.Handler >= len(hs) {
		return fmt.Errorf("signal: %s: handler %d is no longer registered", cj.Signal, cj.Handler)
	}
	_, err := hs[cj.Handler].fn(ctx, &Call{
		Signal: cj.Signal, Kwargs: cj.Kwargs, Window: cj.Window, IdempotencyKey: cj.Key,
		Job: &JobInfo{ID: j.ID, Attempt: j.Attempt}, svc: s,
	})
	if err != nil {
		return fmt.Errorf("signal: %s: %w", cj.Signal, err)
	}
	return nil
}

// uuid4 returns a random (version 4) UUID.
func uuid4() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// validAccess reports whether an access rule is known.
func validAccess(a string) bool {
	switch a {
	case config.AccessAnyone, config.AccessAuthenticated, config.AccessAnonymous, config.AccessServerSide:
		return true
	}
	if n, ok := strings.CutPrefix(a, config.AccessClaimPrefix); ok {
		return n != ""
	}
	if p, ok := strings.CutPrefix(a, config.AccessPermPrefix); ok {
		return p != ""
	}
	return false
}
