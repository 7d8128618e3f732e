package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/client"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/server"
)

// dataPaths are every dashboard URL that shows or changes something.
var dataPaths = []struct{ method, path string }{
	{"GET", "/dashboard/"},
	{"GET", "/dashboard/stats"},
	{"GET", "/dashboard/events/stats"},
	{"GET", "/dashboard/connections"},
	{"GET", "/dashboard/connections?fragment=1"},
	{"POST", "/dashboard/connections/disconnect"},
	{"GET", "/dashboard/channels"},
	{"GET", "/dashboard/channel?name=chat:a"},
	{"POST", "/dashboard/channel/publish"},
	{"GET", "/dashboard/events/channel?name=chat:a"},
	{"GET", "/dashboard/resources"},
	{"GET", "/dashboard/resources/todos"},
	{"GET", "/dashboard/resources/todos?fragment=1"},
	{"GET", "/dashboard/resources/todos/new"},
	{"POST", "/dashboard/resources/todos/new"},
	{"GET", "/dashboard/resources/todos/1"},
	{"POST", "/dashboard/resources/todos/1"},
	{"POST", "/dashboard/resources/todos/1/delete"},
	{"GET", "/dashboard/events/resources/todos"},
	{"GET", "/dashboard/queues"},
	{"POST", "/dashboard/queues/retry"},
	{"POST", "/dashboard/queues/discard"},
	{"GET", "/dashboard/config"},
	{"POST", "/dashboard/logout"},
	{"GET", "/dashboard/no-such-page"},
}

// Without a session, every dashboard URL redirects to the login page and
// shows nothing: with no cookie, a made-up one, or one signed out.
func TestNoSessionRedirects(t *testing.T) {
	e := newEnv(t, nil)
	e.call("POST", "/api/resources/todos/", map[string]any{"title": "secret-title"})
	signedOut, tok := e.signedIn()
	resp, _ := e.post(signedOut, "/dashboard/logout", url.Values{"csrf_token": {tok}}, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/dashboard/login") {
		t.Fatalf("logout: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	forged := e.browser()
	u, _ := url.Parse(e.ts.URL + "/dashboard/")
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: "switchyard_dashboard", Value: "made-up-session"}})
	for name, c := range map[string]*http.Client{"no cookie": e.browser(), "forged cookie": forged, "signed out": signedOut} {
		for _, p := range dataPaths {
			req, _ := http.NewRequest(p.method, e.ts.URL+p.path, strings.NewReader(url.Values{"csrf_token": {tok}, "id": {"1"}, "channel": {"chat:a"}, "data": {"1"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := make([]byte, 4096)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/dashboard/login") {
				t.Errorf("%s: %s %s: %d %q, want 303 to the login page", name, p.method, p.path, resp.StatusCode, loc)
			}
			if strings.Contains(string(body[:n]), "secret-title") || strings.Contains(string(body[:n]), "<table") {
				t.Errorf("%s: %s %s shows data: %s", name, p.method, p.path, body[:n])
			}
		}
	}
	// The record was neither changed nor deleted by those posts.
	var rec map[string]any
	json.Unmarshal(e.call("GET", "/api/resources/todos/1/", nil), &rec)
	if rec["title"] != "secret-title" {
		t.Fatalf("record after the refused posts: %v", rec)
	}
}

// The dashboard is off by default: /dashboard/ is the server's 404.
func TestOffByDefault(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Dashboard = config.DefaultDashboard() })
	resp, body := e.get(e.browser(), "/dashboard/login")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "not_found") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("wrong password", func(t *testing.T) {
		c := e.browser()
		resp, body := e.login(c, "not-the-password")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong password.") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		for _, ck := range resp.Cookies() {
			if ck.Name == "switchyard_dashboard" && ck.Value != "" {
				t.Fatal("a wrong password got a session cookie")
			}
		}
		if resp, _ := e.get(c, "/dashboard/"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("after a wrong password: %d", resp.StatusCode)
		}
	})
	t.Run("cookie", func(t *testing.T) {
		resp, _ := e.login(e.browser(), password)
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "switchyard_dashboard" {
				ck = c
			}
		}
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/dashboard/" || ck.Secure || ck.MaxAge != 8*3600 {
			t.Fatalf("session cookie %+v", ck)
		}
	})
	t.Run("form without its token", func(t *testing.T) {
		resp, body := e.post(e.browser(), "/dashboard/login", url.Values{"password": {password}}, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "The form expired") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		for _, c := range resp.Cookies() {
			if c.Name == "switchyard_dashboard" {
				t.Fatal("signed in without the form's token")
			}
		}
	})
	t.Run("next stays in the dashboard", func(t *testing.T) {
		c := e.browser()
		_, page := e.get(c, "/dashboard/login")
		for next, want := range map[string]string{"/dashboard/queues": "/dashboard/queues", "//evil.example/": "/dashboard/", "https://evil.example/": "/dashboard/", "/dashboard/\\evil": "/dashboard/"} {
			resp, _ := e.post(c, "/dashboard/login", url.Values{"csrf_token": {csrf(t, page)}, "password": {password}, "next": {next}}, nil)
			if got := resp.Header.Get("Location"); got != want {
				t.Errorf("next %q: redirected to %q, want %q", next, got, want)
			}
			c = e.browser()
			_, page = e.get(c, "/dashboard/login")
		}
	})
}

// Behind TLS (public_url https) the session cookie is Secure, and forms
// posted from public_url's origin are accepted although the proxy did
// not pass the Host on.
func TestBehindProxy(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.PublicURL = "https://switchyard.example" })
	resp, _ := e.login(e.browser(), password)
	secure := false
	for _, c := range resp.Cookies() {
		secure = secure || c.Name == "switchyard_dashboard" && c.Secure
	}
	if !secure {
		t.Fatalf("cookies %v: the session's is not Secure behind TLS", resp.Cookies())
	}
	// The test client speaks plain HTTP: a Secure cookie would not be
	// sent back, so set it by hand.
	c := e.browser()
	u, _ := url.Parse(e.ts.URL + "/dashboard/")
	for _, ck := range resp.Cookies() {
		ck.Secure = false
		c.Jar.SetCookies(u, []*http.Cookie{ck})
	}
	_, page := e.get(c, "/dashboard/channels")
	tok := csrf(t, page)
	for origin, want := range map[string]int{"https://switchyard.example": http.StatusSeeOther, "https://evil.example": http.StatusForbidden} {
		resp, _ := e.post(c, "/dashboard/channel/publish", url.Values{"csrf_token": {tok}, "channel": {"chat:a"}, "data": {"1"}}, http.Header{"Origin": {origin}})
		if resp.StatusCode != want {
			t.Errorf("Origin %s: %d, want %d", origin, resp.StatusCode, want)
		}
	}
}

// Past login_attempts, an address is refused even with the right
// password, and the refusal names the key.
func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	c := e.browser()
	for range 3 {
		if resp, _ := e.login(c, "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt: %d", resp.StatusCode)
		}
	}
	resp, body := e.login(c, password)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "dashboard.login_attempts") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "switchyard_dashboard" && ck.Value != "" {
			t.Fatal("a locked-out address signed in")
		}
	}
}

// A state-changing request without the session's CSRF token (or from
// another origin) is refused and changes nothing: the client subscribed
// to the channel receives only the message posted with the token.
func TestCSRF(t *testing.T) {
	e := newEnv(t, nil)
	c, tok := e.signedIn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, e.wsURL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := make(chan string, 10)
	if _, err := cl.Subscribe(ctx, "chat:csrf", client.ChannelHandlers{OnMessage: func(p client.Publication) { got <- string(p.Data) }}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		form   url.Values
		header http.Header
	}{
		"no token":      {url.Values{"channel": {"chat:csrf"}, "data": {`"no token"`}}, nil},
		"wrong token":   {url.Values{"channel": {"chat:csrf"}, "data": {`"wrong token"`}, "csrf_token": {tok + "x"}}, nil},
		"other origin":  {url.Values{"channel": {"chat:csrf"}, "data": {`"other origin"`}, "csrf_token": {tok}}, http.Header{"Origin": {"https://evil.example"}}},
		"cross-site":    {url.Values{"channel": {"chat:csrf"}, "data": {`"cross-site"`}, "csrf_token": {tok}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		"another's one": {url.Values{"channel": {"chat:csrf"}, "data": {`"another's"`}, "csrf_token": {func() string { _, t2 := e.signedIn(); return t2 }()}}, nil},
	} {
		resp, body := e.post(c, "/dashboard/channel/publish", tc.form, tc.header)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// Nor is a connection disconnected without the token.
	resp, _ := e.post(c, "/dashboard/connections/disconnect", url.Values{"id": {cl.ClientID()}}, nil)
	if resp.StatusCode != http.StatusForbidden || cl.State() != client.Connected {
		t.Fatalf("disconnect without a token: %d, client %v", resp.StatusCode, cl.State())
	}
	resp, _ = e.post(c, "/dashboard/channel/publish", url.Values{"channel": {"chat:csrf"}, "data": {`"with the token"`}, "csrf_token": {tok}}, http.Header{"Origin": {e.ts.URL}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("publish with the token: %d", resp.StatusCode)
	}
	select {
	case m := <-got:
		if m != `"with the token"` {
			t.Fatalf("the client received %s: a refused publish went through", m)
		}
	case <-ctx.Done():
		t.Fatal("the publication with the token did not arrive")
	}
}

// The configuration page shows the configuration without any secret.
func TestConfigRedacted(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.signedIn()
	resp, body := e.get(c, "/dashboard/config")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	for _, secret := range []string{password, apiKey, jwtSecret, hookKey, "hook-password", "hook-query-secret"} {
		if strings.Contains(body, secret) {
			t.Errorf("the configuration page shows the secret %q", secret)
		}
	}
	for _, want := range []string{"[redacted]", "shop.order_paid", "hook-user:[redacted]@127.0.0.1:9/hook?[redacted]", "max_length: 20", "chat:", "history_size: 100", "login_attempts: 3"} {
		if !strings.Contains(strings.ReplaceAll(body, "&#39;", "'"), want) {
			t.Errorf("the configuration page lacks %q:\n%s", want, body)
		}
	}
}

// Writes go through the resource service's validation: a refused edit
// shows each field's error beside its input and changes nothing; a good
// one is saved; owner fields can be set (the dashboard is the server).
func TestResourceForms(t *testing.T) {
	e := newEnv(t, nil)
	c, tok := e.signedIn()
	e.call("POST", "/api/resources/todos/", map[string]any{"title": "first"})
	form := url.Values{"csrf_token": {tok}, "title": {"far too long for twenty characters"}, "rank": {"eleven"}, "meta": {"{not json"}, "owner": {"bob"}}
	resp, body := e.post(c, "/dashboard/resources/todos/1", form, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Enter valid JSON.") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	form.Set("meta", `{"a": 1}`)
	resp, body = e.post(c, "/dashboard/resources/todos/1", form, nil)
	for _, want := range []string{
		`id="e-title">Ensure this field has no more than 20 characters.`,
		`id="e-rank">A valid integer is required.`,
		`id="f-title" name="title" type="text" value="far too long for twenty characters" aria-invalid="true"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the form lacks %q", want)
		}
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("%d", resp.StatusCode)
	}
	var rec map[string]any
	json.Unmarshal(e.call("GET", "/api/resources/todos/1/", nil), &rec)
	if rec["title"] != "first" || rec["owner"] != nil {
		t.Fatalf("a refused edit changed the record: %v", rec)
	}
	form.Set("title", "second")
	form.Set("rank", "7")
	form.Set("done", "true")
	if resp, body := e.post(c, "/dashboard/resources/todos/1", form, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	json.Unmarshal(e.call("GET", "/api/resources/todos/1/", nil), &rec)
	if rec["title"] != "second" || rec["rank"] != float64(7) || rec["done"] != true || rec["owner"] != "bob" || fmt.Sprint(rec["meta"]) != "map[a:1]" {
		t.Fatalf("saved record: %v", rec)
	}
	// Create: a missing required field is an inline error; then created.
	resp, body = e.post(c, "/dashboard/resources/todos/new", url.Values{"csrf_token": {tok}, "title": {""}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="e-title">This field may not be blank.`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, _ := e.post(c, "/dashboard/resources/todos/new", url.Values{"csrf_token": {tok}, "title": {"third"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	_, list := e.get(c, "/dashboard/resources/todos?field=title&value=third")
	if !strings.Contains(list, "Records 1–1 of 1") || !strings.Contains(list, ">third<") {
		t.Fatalf("filtered list:\n%s", list)
	}
	_, list = e.get(c, "/dashboard/resources/todos?field=rank&value=abc")
	if !strings.Contains(list, "rank: A valid integer is required.") {
		t.Fatalf("a bad filter is not explained:\n%s", list)
	}
	_, list = e.get(c, "/dashboard/resources/todos?ordering=-id&page_size=1&page=2")
	if !strings.Contains(list, "Records 2–2 of 2") || !strings.Contains(list, ">second<") || !strings.Contains(list, `rel="prev"`) {
		t.Fatalf("paged list:\n%s", list)
	}
	if resp, _ := e.post(c, "/dashboard/resources/todos/2/delete", url.Values{"csrf_token": {tok}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, page := e.get(c, "/dashboard/resources/todos/2"); !strings.Contains(page, "Not found.") {
		t.Fatalf("deleted record: %s", page)
	}
}

// Publishing to the server's own channels is refused, as on the server
// API.
func TestPublishReserved(t *testing.T) {
	e := newEnv(t, nil)
	c, tok := e.signedIn()
	resp, body := e.post(c, "/dashboard/channel/publish", url.Values{"csrf_token": {tok}, "channel": {"$resource:todos"}, "data": {`{"op":"delete"}`}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cannot be published to") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = e.post(c, "/dashboard/channel/publish", url.Values{"csrf_token": {tok}, "channel": {"chat:a"}, "data": {`not json`}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "The message must be JSON") || !strings.Contains(body, ">not json</textarea>") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// failingJob registers a job kind whose every attempt fails, and returns
// a function that enqueues one on the queue "mail" (its retries wait an
// hour) and waits until its first attempt failed.
func failingJob(t testing.TB) (func(*server.Server), func(*env) int64) {
	register := func(srv *server.Server) {
		if err := srv.Queue().Handle("dashboard.fail", func(context.Context, queue.Job) error { return errors.New("the mail server said no") }); err != nil {
			t.Fatal(err)
		}
	}
	enqueue := func(e *env) int64 {
		id, err := e.srv.Queue().Enqueue(context.Background(), queue.Params{Queue: "mail", Kind: "dashboard.fail", Payload: json.RawMessage(`{"to":"someone"}`)})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the job fails", func() error {
			in, err := e.srv.Queue().Get(context.Background(), id)
			if err != nil || in.State != queue.StateRetryable {
				return fmt.Errorf("job %d: %+v %v", id, in.State, err)
			}
			return nil
		})
		return id
	}
	return register, enqueue
}

// Failed jobs are listed with their error, discarded and retried through
// the queue.
func TestJobActions(t *testing.T) {
	register, enqueue := failingJob(t)
	e := newEnv(t, nil, register)
	id := enqueue(e)
	q := e.srv.Queue()
	ctx := context.Background()
	c, tok := e.signedIn()
	state := func() string {
		in, err := q.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return in.State
	}
	_, page := e.get(c, "/dashboard/queues")
	for _, want := range []string{fmt.Sprintf(`<tr data-job="%d">`, id), "the mail server said no", "shop.order_paid", "<code>mail</code>", fmt.Sprintf(`aria-label="Discard job %d"`, id)} {
		if !strings.Contains(page, want) {
			t.Errorf("the queues page lacks %q", want)
		}
	}
	if strings.Contains(page, "hook-password") {
		t.Fatal("the webhook's password is shown")
	}
	resp, _ := e.post(c, "/dashboard/queues/discard", url.Values{"csrf_token": {tok}, "id": {fmt.Sprint(id)}}, nil)
	if resp.StatusCode != http.StatusSeeOther || state() != queue.StateCancelled {
		t.Fatalf("discard: %d, job %s", resp.StatusCode, state())
	}
	if _, page := e.get(c, "/dashboard/queues"); !strings.Contains(page, fmt.Sprintf("Job %d discarded: it is now cancelled.", id)) {
		t.Fatalf("queues page after discard:\n%s", page)
	}
	resp, _ = e.post(c, "/dashboard/queues/retry", url.Values{"csrf_token": {tok}, "id": {fmt.Sprint(id)}}, nil)
	if resp.StatusCode != http.StatusSeeOther || state() == queue.StateCancelled {
		t.Fatalf("retry: %d, job %s", resp.StatusCode, state())
	}
	eventually(t, "the retried job runs (and fails) again", func() error {
		in, _ := q.Get(ctx, id)
		if in.State != queue.StateRetryable || len(in.Errors) < 1 {
			return fmt.Errorf("%s, %d errors", in.State, len(in.Errors))
		}
		return nil
	})
	resp, body := e.post(c, "/dashboard/queues/retry", url.Values{"csrf_token": {tok}, "id": {"x"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad id: %d %s", resp.StatusCode, body)
	}
	resp, _ = e.post(c, "/dashboard/queues/discard", url.Values{"csrf_token": {tok}, "id": {"999999"}}, nil)
	if _, page := e.get(c, "/dashboard/queues"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(page, "There is no job 999999.") {
		t.Fatalf("unknown job: %d", resp.StatusCode)
	}
}

// The channel tail and the resource stream are live, and the server's
// shutdown ends them.
func TestStreams(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.signedIn()
	c.Timeout = 0
	open := func(path string) (*http.Response, chan string) {
		req, _ := http.NewRequest("GET", e.ts.URL+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		lines := make(chan string, 100)
		go func() {
			defer close(lines)
			buf := make([]byte, 4096)
			var rest string
			for {
				n, err := resp.Body.Read(buf)
				rest += string(buf[:n])
				for {
					i := strings.Index(rest, "\n\n")
					if i < 0 {
						break
					}
					lines <- rest[:i]
					rest = rest[i+2:]
				}
				if err != nil {
					return
				}
			}
		}()
		return resp, lines
	}
	want := func(lines chan string, sub string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", sub)
				}
				if strings.Contains(l, sub) {
					return
				}
			case <-timeout:
				t.Fatalf("no event with %q", sub)
			}
		}
	}
	tail, tailLines := open("/dashboard/events/channel?name=chat:live")
	defer tail.Body.Close()
	want(tailLines, ": open")
	e.api("publish", map[string]any{"channel": "chat:live", "data": map[string]string{"text": "live one"}})
	want(tailLines, `"text":"live one"`)
	// The observer is nobody's subscriber: no presence, no channel count.
	var pres struct {
		Clients []any `json:"clients"`
	}
	json.Unmarshal(e.api("presence", map[string]any{"channel": "chat:live"}), &pres)
	if len(pres.Clients) != 0 {
		t.Fatalf("the dashboard is present in the channel: %v", pres.Clients)
	}
	changes, changeLines := open("/dashboard/events/resources/todos")
	defer changes.Body.Close()
	want(changeLines, ": open")
	e.call("POST", "/api/resources/todos/", map[string]any{"title": "streamed"})
	want(changeLines, `"title":"streamed"`)
	stats, statLines := open("/dashboard/events/stats")
	defer stats.Body.Close()
	want(statLines, "event: sample")

	var wg sync.WaitGroup
	for _, l := range []chan string{tailLines, changeLines, statLines} {
		wg.Go(func() {
			for range l {
			}
		})
	}
	d := e.stop()
	wg.Wait()
	if d > 2*time.Second {
		t.Fatalf("shutdown waited %v for the dashboard's streams", d)
	}
}
