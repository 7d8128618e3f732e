package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
)

const proxySecret = "proxy-secret-0123456789"

// sessionApp is the application side of the connect proxy, as a Django
// view would be: it checks the signature, reads the session cookie and
// answers with the session's user, or refuses.
type sessionApp struct {
	t        *testing.T
	mu       sync.Mutex
	sessions map[string]func() (int, string) // sessionid → status, body
	calls    []appCall
	srv      *httptest.Server
}

type appCall struct {
	body   proxyCall
	header http.Header
}

func newSessionApp(t *testing.T) *sessionApp {
	a := &sessionApp{t: t, sessions: map[string]func() (int, string){}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *sessionApp) set(session string, f func() (int, string)) {
	a.mu.Lock()
	a.sessions[session] = f
	a.mu.Unlock()
}

func (a *sessionApp) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := VerifySignature([]byte(proxySecret), r.Header.Get(SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	var c proxyCall
	if err := json.Unmarshal(body, &c); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.calls = append(a.calls, appCall{c, r.Header.Clone()})
	var f func() (int, string)
	if ck, err := r.Cookie("sessionid"); err == nil {
		f = a.sessions[ck.Value]
	}
	a.mu.Unlock()
	if f == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"detail": "Authentication credentials were not provided."}`)
		return
	}
	status, out := f()
	if status == http.StatusFound {
		http.Redirect(w, r, "/accounts/login/?next=/switchyard/connect", status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.HasPrefix(out, "text:") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		out = strings.TrimPrefix(out, "text:")
	}
	w.WriteHeader(status)
	io.WriteString(w, out)
}

func (a *sessionApp) callCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

func newProxy(t *testing.T, url string, mutate func(*ProxyConfig)) *Proxy {
	t.Helper()
	cfg := ProxyConfig{URL: url, Secret: []byte(proxySecret), Timeout: 2 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := NewProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func upgradeRequest(cookie string) *http.Request {
	r := httptest.NewRequest("GET", "/live", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	r.Header.Set("User-Agent", "Mozilla/5.0 test")
	r.Header.Set("X-Private", "must not be forwarded")
	if cookie != "" {
		r.Header.Set("Cookie", "csrftoken=abc; sessionid="+cookie)
	}
	return r
}

func TestProxyAccepts(t *testing.T) {
	app := newSessionApp(t)
	app.set("s-alice", func() (int, string) {
		return 200, `{"user": 42, "info": {"name": "Alice"}, "channels": ["chat:lobby"], "topics": ["room1"], "expire_at": null}`
	})
	p := newProxy(t, app.srv.URL, nil)
	r := upgradeRequest("s-alice")
	r.Header.Set("Authorization", "Session xyz")
	g, err := p.Ask(context.Background(), r, ConnectionOf(r, "c-1", "websocket", "live"))
	if err != nil {
		t.Fatal(err)
	}
	if g.Principal.User != "42" || g.Principal.Anonymous || string(g.Principal.Info) != `{"name": "Alice"}` ||
		fmt.Sprint(g.Principal.Channels) != "[chat:lobby]" || fmt.Sprint(g.Principal.Topics) != "[room1]" || !g.Principal.Expires.IsZero() ||
		!strings.Contains(string(g.Principal.Claims), `"info": {"name": "Alice"}`) {
		t.Fatalf("grant: %+v", g)
	}
	call := app.calls[0]
	want := proxyCall{Connection: Connection{ClientID: "c-1", Transport: "websocket", Protocol: "live", Path: "/live", RemoteAddr: "192.0.2.7:51234", UserAgent: "Mozilla/5.0 test"}}
	if call.body != want {
		t.Errorf("call body %+v, want %+v", call.body, want)
	}
	if call.header.Get("Cookie") != "csrftoken=abc; sessionid=s-alice" || call.header.Get("Authorization") != "Session xyz" {
		t.Errorf("forwarded headers: %v", call.header)
	}
	if call.header.Get("X-Private") != "" || call.header.Get("User-Agent") != "Switchyard-Connect-Proxy" {
		t.Errorf("a header that is not configured was forwarded: %v", call.header)
	}
	// User forms: a string, null (anonymous), and an RFC 3339 expiry.
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	app.set("s-anon", func() (int, string) {
		return 200, fmt.Sprintf(`{"user": null, "expire_at": %q}`, exp.Format(time.RFC3339))
	})
	g, err = p.Ask(context.Background(), upgradeRequest("s-anon"), Connection{})
	if err != nil || g.Principal.User != "" || !g.Principal.Anonymous || !g.Principal.Expires.Equal(exp) {
		t.Fatalf("anonymous grant: %+v %v", g, err)
	}
}

func TestProxyRefuses(t *testing.T) {
	app := newSessionApp(t)
	app.set("s-banned", func() (int, string) { return 403, `text:This account is disabled.` })
	app.set("s-login", func() (int, string) { return 302, "" })
	app.set("s-old", func() (int, string) { return 200, `{"user": "7", "expire_at": 1000}` })
	p := newProxy(t, app.srv.URL, nil)
	for _, c := range []struct {
		cookie string
		code   switchyard.Code
		msg    string
	}{
		{"", switchyard.CodeUnauthorized, "Authentication credentials were not provided."},
		{"s-unknown", switchyard.CodeUnauthorized, "Authentication credentials were not provided."},
		{"s-banned", switchyard.CodeForbidden, "This account is disabled."},
		{"s-login", switchyard.CodeUnauthorized, "authentication required"},
		{"s-old", switchyard.CodeUnauthorized, "expired"},
	} {
		_, err := p.Ask(context.Background(), upgradeRequest(c.cookie), Connection{})
		if !errors.Is(err, ErrProxyRefused) || switchyard.ErrorCode(err) != c.code || !strings.Contains(switchyard.ErrorMessage(err), c.msg) {
			t.Errorf("cookie %q: %v, want %s %q", c.cookie, err, c.code, c.msg)
		}
	}
}

func TestProxyUnavailable(t *testing.T) {
	app := newSessionApp(t)
	app.set("s-500", func() (int, string) { return 500, `{"detail": "boom: Traceback …"}` })
	app.set("s-html", func() (int, string) { return 200, `<html>login</html>` })
	app.set("s-obj", func() (int, string) { return 200, `{"user": {"pk": 1}}` })
	app.set("s-exp", func() (int, string) { return 200, `{"user": "1", "expire_at": "tomorrow"}` })
	p := newProxy(t, app.srv.URL, nil)
	for _, cookie := range []string{"s-500", "s-html", "s-obj", "s-exp"} {
		_, err := p.Ask(context.Background(), upgradeRequest(cookie), Connection{})
		if !errors.Is(err, ErrProxyUnavailable) || switchyard.ErrorCode(err) != switchyard.CodeUnavailable {
			t.Errorf("cookie %s: %v, want unavailable", cookie, err)
		}
		if strings.Contains(switchyard.ErrorMessage(err), "Traceback") {
			t.Errorf("the application's internals reached the client: %v", err)
		}
	}
	// Nothing listens.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if _, err := newProxy(t, dead.URL, nil).Ask(context.Background(), upgradeRequest("x"), Connection{}); !errors.Is(err, ErrProxyUnavailable) {
		t.Errorf("no application: %v", err)
	}
}

// An application that does not answer: the call gives up at the timeout
// with 503, it never hangs.
func TestProxyTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(func() { close(release); slow.Close() })
	p := newProxy(t, slow.URL, func(c *ProxyConfig) { c.Timeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := p.Ask(context.Background(), upgradeRequest("s"), Connection{})
	if !errors.Is(err, ErrProxyUnavailable) || switchyard.HTTPStatus(switchyard.ErrorCode(err)) != 503 {
		t.Fatalf("slow application: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the call took %v with a 200ms timeout", d)
	}
}

func TestIdentify(t *testing.T) {
	app := newSessionApp(t)
	app.set("s-bob", func() (int, string) { return 200, `{"user": "bob"}` })
	p := newProxy(t, app.srv.URL, nil)
	v := newVerifier(t, config.Auth{Anonymous: false, JWT: config.JWT{HMACSecret: testSecret}, CookieName: "switchyard_token"})
	ctx := context.Background()

	// A valid token decides; the application is not asked.
	r := upgradeRequest("s-bob")
	r.Header.Set("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("alice")))
	pr, g, err := Identify(ctx, r, v, p, Connection{})
	if err != nil || pr.User != "alice" || g != nil || app.callCount() != 0 {
		t.Fatalf("valid token: %+v %v %v calls=%d", pr, g, err, app.callCount())
	}
	// No token: the application answers.
	pr, g, err = Identify(ctx, upgradeRequest("s-bob"), v, p, Connection{})
	if err != nil || pr.User != "bob" || g == nil {
		t.Fatalf("no token: %+v %v", pr, err)
	}
	// An invalid token: the application is asked too.
	r = upgradeRequest("s-bob")
	r.Header.Set("Authorization", "Bearer not.a.token")
	if pr, _, err = Identify(ctx, r, v, p, Connection{}); err != nil || pr.User != "bob" {
		t.Fatalf("invalid token with a proxy: %+v %v", pr, err)
	}
	// ... and its refusal is the answer.
	r = upgradeRequest("s-nobody")
	r.Header.Set("Authorization", "Bearer not.a.token")
	if _, _, err = Identify(ctx, r, v, p, Connection{}); !errors.Is(err, ErrProxyRefused) {
		t.Fatalf("refused: %v", err)
	}
	// An anonymous answer when anonymous clients are not allowed: refused
	// as a connection without credentials; allowed, it is anonymous.
	app.set("s-anon", func() (int, string) { return 200, `{"user": null}` })
	if _, _, err = Identify(ctx, upgradeRequest("s-anon"), v, p, Connection{}); switchyard.ErrorMessage(err) != msgAuthRequired {
		t.Fatalf("anonymous answer, auth.anonymous false: %v", err)
	}
	open := newVerifier(t, config.Auth{Anonymous: true, JWT: config.JWT{HMACSecret: testSecret}})
	if pr, _, err = Identify(ctx, upgradeRequest("s-anon"), open, p, Connection{}); err != nil || !pr.Anonymous {
		t.Fatalf("anonymous answer, auth.anonymous true: %+v %v", pr, err)
	}
	// Without a proxy, the verifier's rules.
	r = upgradeRequest("s-bob")
	r.Header.Set("Authorization", "Bearer not.a.token")
	if _, _, err = Identify(ctx, r, v, nil, Connection{}); switchyard.ErrorCode(err) != switchyard.CodeUnauthorized || errors.Is(err, ErrProxyRefused) {
		t.Fatalf("invalid token without a proxy: %v", err)
	}
	if _, _, err = Identify(ctx, upgradeRequest(""), v, nil, Connection{}); switchyard.ErrorMessage(err) != msgAuthRequired {
		t.Fatalf("no token, anonymous off: %v", err)
	}
	if pr, _, err = Identify(ctx, upgradeRequest(""), nil, nil, Connection{}); err != nil || !pr.Anonymous {
		t.Fatalf("nothing configured: %+v %v", pr, err)
	}
}

// keeper records what a proxy does to a kept connection.
type keeper struct {
	mu      sync.Mutex
	expires []time.Time
	closed  []string
}

func (k *keeper) SetExpires(t time.Time) {
	k.mu.Lock()
	k.expires = append(k.expires, t)
	k.mu.Unlock()
}

func (k *keeper) Close(code int, reason string) {
	k.mu.Lock()
	k.closed = append(k.closed, fmt.Sprintf("%d %s", code, reason))
	k.mu.Unlock()
}

func (k *keeper) state() (int, []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.expires), append([]string(nil), k.closed...)
}

func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An answer with expire_at is asked again before it: the same user
// extends the connection, a refusal closes it with 4001, another user
// closes it too.
func TestProxyKeep(t *testing.T) {
	app := newSessionApp(t)
	var mu sync.Mutex
	answer := func() (int, string) {
		return 200, fmt.Sprintf(`{"user": "alice", "expire_at": %.3f}`, float64(time.Now().Add(1200*time.Millisecond).UnixMilli())/1000)
	}
	app.set("s-alice", func() (int, string) {
		mu.Lock()
		defer mu.Unlock()
		return answer()
	})
	p := newProxy(t, app.srv.URL, func(c *ProxyConfig) { c.RefreshBefore = time.Second })
	g, err := p.Ask(context.Background(), upgradeRequest("s-alice"), Connection{ClientID: "c-9"})
	if err != nil {
		t.Fatal(err)
	}
	k := &keeper{}
	stop := p.Keep(k, g)
	defer stop()
	waitFor(t, 5*time.Second, func() error {
		if n, closed := k.state(); n < 2 || len(closed) > 0 {
			return fmt.Errorf("refreshed %d times, closed %v", n, closed)
		}
		return nil
	})
	app.mu.Lock()
	last := app.calls[len(app.calls)-1]
	app.mu.Unlock()
	if !last.body.Refresh || last.body.ClientID != "c-9" || !strings.Contains(last.header.Get("Cookie"), "sessionid=s-alice") {
		t.Errorf("a refresh call: %+v %v", last.body, last.header)
	}
	mu.Lock()
	answer = func() (int, string) { return 401, `{"detail": "Session expired."}` }
	mu.Unlock()
	waitFor(t, 5*time.Second, func() error {
		if _, closed := k.state(); len(closed) != 1 || closed[0] != "4001 Session expired." {
			return fmt.Errorf("closed %v", closed)
		}
		return nil
	})

	// Another user now: closed as well.
	mu.Lock()
	answer = func() (int, string) {
		return 200, fmt.Sprintf(`{"user": "alice", "expire_at": %d}`, time.Now().Add(1200*time.Millisecond).Unix()+1)
	}
	mu.Unlock()
	g, err = p.Ask(context.Background(), upgradeRequest("s-alice"), Connection{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	answer = func() (int, string) { return 200, `{"user": "mallory"}` }
	mu.Unlock()
	k2 := &keeper{}
	defer p.Keep(k2, g)()
	waitFor(t, 5*time.Second, func() error {
		if _, closed := k2.state(); len(closed) != 1 || !strings.HasPrefix(closed[0], "4001 ") {
			return fmt.Errorf("closed %v", closed)
		}
		return nil
	})
}

// A stopped keep is never called again, and Close ends everything.
func TestProxyKeepStop(t *testing.T) {
	app := newSessionApp(t)
	app.set("s", func() (int, string) {
		return 200, fmt.Sprintf(`{"user": "u", "expire_at": %d}`, time.Now().Add(3*time.Second).Unix())
	})
	p := newProxy(t, app.srv.URL, func(c *ProxyConfig) { c.RefreshBefore = 2500 * time.Millisecond })
	g, err := p.Ask(context.Background(), upgradeRequest("s"), Connection{})
	if err != nil {
		t.Fatal(err)
	}
	k := &keeper{}
	p.Keep(k, g)() // stopped at once
	p.mu.Lock()
	queued := len(p.queue)
	p.mu.Unlock()
	if n := app.callCount(); n != 1 || queued != 0 {
		t.Fatalf("calls %d, still queued %d", n, queued)
	}
	// A keep whose answer has no expiry schedules nothing.
	p.Keep(k, &Grant{})()
	p.Close()
	if n, closed := k.state(); n != 0 || len(closed) != 0 || app.callCount() != 1 {
		t.Fatalf("after stop and Close: %d %v calls=%d", n, closed, app.callCount())
	}
}
