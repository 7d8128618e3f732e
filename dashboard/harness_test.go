package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

// The secrets of the test configuration: none of them may ever show on a
// dashboard page.
const (
	password  = "dashboard-test-password"
	apiKey    = "dashboard-test-api-key-0123456789"
	jwtSecret = "dashboard-test-hmac-secret-0123456789"
	hookKey   = "dashboard-test-webhook-secret-0123"
)

const testConfig = `
auth:
  anonymous: true
  jwt: {hmac_secret: "` + jwtSecret + `"}
api_keys: ["` + apiKey + `"]
dashboard:
  enabled: true
  password: "` + password + `"
  login_attempts: 3
resources:
  todos:
    fields:
      title: {type: string, required: true, max_length: 20}
      done: {type: bool, default: false}
      rank: {type: int, min: 0, max: 10}
      meta: {type: json}
      owner: {type: string}
    search: [title]
    ordering: [id]
    permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}
channels:
  namespaces:
    chat:
      presence: true
      history_size: 100
      history_ttl: 1h
      permissions: {subscribe: anyone, publish: anyone, presence: anyone, history: anyone}
signals:
  webhook_secret: "` + hookKey + `"
  shop.order_paid: {queue: default, webhook: "http://hook-user:hook-password@127.0.0.1:9/hook?token=hook-query-secret"}
queues:
  mail: {concurrency: 1, backoff: 1h, max_backoff: 1h}
`

// logWriter sends the server's log (and a subprocess's output) to the
// test's, until the test ends: the job queue's goroutines may still log
// while the server stops, and a test must not log once it is over.
type logWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func newLogWriter(t testing.TB) *logWriter {
	w := &logWriter{t: t}
	t.Cleanup(func() { // registered first: runs after the server stopped
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// env is a running server with the dashboard on.
type env struct {
	t   testing.TB
	srv *server.Server
	ts  struct{ URL string }
	cfg config.Config

	cancel context.CancelFunc
	done   chan error
}

// newEnv runs a server from testConfig on a port of its own; edit
// changes the parsed configuration first, before runs before the server
// starts (to register job handlers).
func newEnv(t testing.TB, edit func(*config.Config), before ...func(*server.Server)) *env {
	t.Helper()
	cfg, err := config.Parse("dashboard-test.yaml", []byte(testConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Limits.ShutdownTimeout = config.Duration(5 * time.Second)
	if edit != nil {
		edit(&cfg)
	}
	logs := newLogWriter(t)
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range before {
		fn(srv)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, srv: srv, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	e.ts.URL = "http://" + srv.Addr().String()
	go func() { e.done <- srv.Run(ctx) }()
	t.Cleanup(func() { e.stop() })
	// Run serves once the queues have started: a first answer means the
	// test may enqueue jobs (River's Start and a concurrent insert race).
	eventually(t, "the server answers", func() error {
		resp, err := http.Get(e.ts.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return e
}

// stop shuts the server down (the dashboard's streams end first) and
// returns how long that took.
func (e *env) stop() time.Duration {
	start := time.Now()
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("server: %v", err)
	}
	e.done <- nil // a second stop returns at once
	return time.Since(start)
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so that tests see them.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// get fetches a dashboard path and returns the response with its body.
func (e *env) get(c *http.Client, path string) (*http.Response, string) {
	e.t.Helper()
	resp, err := c.Get(e.ts.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// post posts a form.
func (e *env) post(c *http.Client, path string, form url.Values, header http.Header) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// csrf returns the CSRF token of a page.
func csrf(t testing.TB, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf_token in the page:\n%s", body)
	}
	return m[1]
}

// login signs a browser in with a password and returns the response.
func (e *env) login(c *http.Client, pw string) (*http.Response, string) {
	e.t.Helper()
	_, page := e.get(c, "/dashboard/login")
	return e.post(c, "/dashboard/login", url.Values{"csrf_token": {csrf(e.t, page)}, "password": {pw}}, nil)
}

// signedIn returns a signed-in browser and a page's CSRF token.
func (e *env) signedIn() (*http.Client, string) {
	e.t.Helper()
	c := e.browser()
	resp, _ := e.login(c, password)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/" {
		e.t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page := e.get(c, "/dashboard/channels")
	return c, csrf(e.t, page)
}

// api calls the server API.
func (e *env) api(method string, body any) json.RawMessage {
	e.t.Helper()
	return e.call("POST", "/api/server/"+method, body)
}

// call makes an API-key request and returns the JSON answer.
func (e *env) call(method, path string, body any) json.RawMessage {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "apikey "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

// token mints a client token for a user.
func token(t testing.TB, user string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wsURL is the server's /live URL.
func (e *env) wsURL() string { return "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/live" }

// eventually waits for a condition.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
