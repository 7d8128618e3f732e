package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/internal/signin"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// Prefix is the dashboard's URL path.
const Prefix = "/dashboard/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures a Dashboard. Hub, Resources and Config are required;
// Signals and Queue add the signals and queues page.
type Config struct {
	// Config is the server's effective configuration: its dashboard
	// section is the dashboard's own settings, the rest is shown
	// (secrets redacted) on the configuration page.
	Config    config.Config
	Hub       *hub.Hub
	Resources *resource.Service
	Signals   *signal.Service
	Queue     *queue.Queue
	// Traffic reads this process's message counters (nil: zero).
	Traffic func() Traffic
	// Nodes lists the cluster's nodes for the overview. Nil: this
	// process alone, described by Node.
	Nodes NodeSource
	// Node describes this process (nil: a node named after the host).
	Node func() Node
	// SampleInterval is the time between two samples of the overview's
	// charts (default 1 s); History is how many are kept (default 600:
	// ten minutes).
	SampleInterval time.Duration
	History        int
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Traffic are a process's message counters since it started.
type Traffic struct {
	// MessagesIn and MessagesOut count the WebSocket messages received
	// from and sent to clients.
	MessagesIn, MessagesOut uint64
}

// Dashboard is the admin dashboard's HTTP handler. Create it with New.
type Dashboard struct {
	cfg       Config
	opts      config.Dashboard
	log       *slog.Logger
	hash      []byte // bcrypt hash of the password, when configured as such
	password  []byte // the password, when configured as such
	secureURL bool   // public_url is https: cookies are Secure
	// publicHost is public_url's host: behind a proxy that rewrites Host,
	// the browser's Origin is that one.
	publicHost   string
	writeTimeout time.Duration

	limiter  *signin.Limiter
	sessions *sessions
	sampler  *sampler
	pages    map[string]*template.Template
	mux      *http.ServeMux
	static   http.Handler

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New validates the configuration and starts the dashboard's sampler.
func New(cfg Config) (*Dashboard, error) {
	o := cfg.Config.Dashboard
	if !o.Enabled {
		return nil, errors.New("dashboard: dashboard.enabled is false")
	}
	if cfg.Hub == nil || cfg.Resources == nil {
		return nil, errors.New("dashboard: Hub and Resources are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 600
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = config.DefaultDashboard().SessionTTL
	}
	if o.LoginAttempts <= 0 || o.LoginAttemptsGlobal <= 0 || o.LoginLockout <= 0 {
		def := config.DefaultDashboard()
		o.LoginAttempts, o.LoginAttemptsGlobal, o.LoginLockout = def.LoginAttempts, def.LoginAttemptsGlobal, def.LoginLockout
	}
	d := &Dashboard{
		cfg:          cfg,
		opts:         o,
		log:          cfg.Logger,
		writeTimeout: time.Duration(cfg.Config.Limits.WriteTimeout),
		limiter:      signin.New(o.LoginAttempts, o.LoginAttemptsGlobal, time.Duration(o.LoginLockout), cfg.Now),
		sessions:     newSessions(time.Duration(o.SessionTTL), cfg.Now),
		stop:         make(chan struct{}),
	}
	if d.writeTimeout <= 0 {
		d.writeTimeout = 10 * time.Second
	}
	switch {
	case o.PasswordHash != "":
		if _, err := bcrypt.Cost([]byte(o.PasswordHash)); err != nil {
			return nil, fmt.Errorf("dashboard: dashboard.password_hash is not a bcrypt hash: %w", err)
		}
		d.hash = []byte(o.PasswordHash)
	case o.Password != "":
		d.password = []byte(o.Password)
	default:
		return nil, errors.New("dashboard: dashboard.password or dashboard.password_hash is required")
	}
	if u, err := url.Parse(cfg.Config.PublicURL); err == nil && cfg.Config.PublicURL != "" {
		d.secureURL = u.Scheme == "https"
		d.publicHost = u.Host
	}
	var err error
	if d.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	d.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	d.sampler = newSampler(cfg.History)
	d.routes()
	d.wg.Go(d.sample)
	return d, nil
}

// Close stops the sampler and ends the live streams (a graceful shutdown
// calls it before waiting for requests to finish). It is idempotent.
func (d *Dashboard) Close() {
	d.stopOnce.Do(func() { close(d.stop) })
	d.wg.Wait()
}

// Register mounts the dashboard at Prefix on mux.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.Handle(Prefix, d)
}

// ServeHTTP serves the dashboard (mount it at Prefix).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	d.mux.ServeHTTP(w, r)
}

// routes builds the dashboard's mux: the login page and the static files
// are public, everything else goes through authed.
func (d *Dashboard) routes() {
	m := http.NewServeMux()
	m.Handle("GET "+Prefix+"static/", d.static)
	m.HandleFunc("GET "+Prefix+"login", d.loginPage)
	m.HandleFunc("POST "+Prefix+"login", d.login)
	page := func(pattern string, fn func(http.ResponseWriter, *http.Request, *session)) {
		m.Handle(pattern, d.authed(fn))
	}
	page("POST "+Prefix+"logout", d.logout)
	page("GET "+Prefix+"{$}", d.overview)
	page("GET "+Prefix+"stats", d.statsJSON)
	page("GET "+Prefix+"events/stats", d.statsEvents)
	page("GET "+Prefix+"connections", d.connections)
	page("POST "+Prefix+"connections/disconnect", d.disconnect)
	page("GET "+Prefix+"channels", d.channels)
	page("GET "+Prefix+"channel", d.channel)
	page("POST "+Prefix+"channel/publish", d.publish)
	page("GET "+Prefix+"events/channel", d.channelEvents)
	page("GET "+Prefix+"resources", d.resources)
	page("GET "+Prefix+"resources/{name}", d.resourceList)
	page("GET "+Prefix+"resources/{name}/new", d.resourceNew)
	page("POST "+Prefix+"resources/{name}/new", d.resourceCreate)
	page("GET "+Prefix+"resources/{name}/{pk}", d.resourceEdit)
	page("POST "+Prefix+"resources/{name}/{pk}", d.resourceSave)
	page("POST "+Prefix+"resources/{name}/{pk}/delete", d.resourceDelete)
	page("GET "+Prefix+"events/resources/{name}", d.resourceEvents)
	page("GET "+Prefix+"queues", d.queues)
	page("POST "+Prefix+"queues/retry", d.jobRetry)
	page("POST "+Prefix+"queues/discard", d.jobDiscard)
	page("GET "+Prefix+"config", d.configPage)
	// Anything else: the session first (no probing without it), then 404.
	page(Prefix, func(w http.ResponseWriter, r *http.Request, s *session) {
		d.fail(w, r, s, http.StatusNotFound, "not_found", "There is no such page in the dashboard.")
	})
	d.mux = m
}

// authed runs fn for a request with a valid session; without one, the
// browser is sent to the login page (303, whatever the method). A request
// that could change something (any method but GET and HEAD) must also
// carry the session's CSRF token, as the csrf_token form field or the
// X-CSRF-Token header, and must not come from another site.
func (d *Dashboard) authed(fn func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := d.sessions.get(r)
		if s == nil {
			next := ""
			if r.Method == http.MethodGet && r.URL.Path != Prefix {
				next = "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, Prefix+"login"+next, http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if msg := d.checkCSRF(w, r, s); msg != "" {
				d.log.Warn("dashboard: request refused", "reason", msg, "path", r.URL.Path, "remote", r.RemoteAddr)
				d.fail(w, r, s, http.StatusForbidden, "csrf", msg)
				return
			}
		}
		fn(w, r, s)
	})
}

// checkCSRF returns why a state-changing request is refused, or "".
func (d *Dashboard) checkCSRF(w http.ResponseWriter, r *http.Request, s *session) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "cross-site request refused"
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || (!strings.EqualFold(u.Host, r.Host) && !strings.EqualFold(u.Host, d.publicHost)) {
			return "request from another origin refused (behind a proxy that changes Host, set public_url)"
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	token := r.Header.Get("X-CSRF-Token")
	if token == "" {
		token = r.PostFormValue("csrf_token")
	}
	if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) != 1 {
		return "missing or wrong CSRF token: reload the page and try again"
	}
	return ""
}

// maxForm bounds a posted form (a message or a record included).
const maxForm = 1 << 20

// fail answers an error: a JSON body for a script (Accept:
// application/json), the error page otherwise.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, s *session, status int, code, msg string) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") || s == nil {
		ws.WriteError(w, status, code, msg)
		return
	}
	d.render(w, r, s, status, "error.html", "Error", "", map[string]any{"Status": status, "Message": msg})
}

// checkPassword compares a password with the configured one: bcrypt's
// comparison, or the SHA-256 digests compared in constant time (so the
// time taken says nothing of the password's length either).
func (d *Dashboard) checkPassword(p string) bool {
	if d.hash != nil {
		return bcrypt.CompareHashAndPassword(d.hash, []byte(p)) == nil
	}
	got, want := sha256.Sum256([]byte(p)), sha256.Sum256(d.password)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// secure reports whether the dashboard's cookies get the Secure flag:
// the request came over TLS, or public_url is https (TLS ends at a proxy).
func (d *Dashboard) secure(r *http.Request) bool { return r.TLS != nil || d.secureURL }

// requestContext bounds a page's work.
func requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}
