package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
)

// restRequest sends a REST request with the given headers.
func restRequest(t *testing.T, method, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func countThings(t *testing.T, base string) int {
	t.Helper()
	_, body := restRequest(t, "GET", base+"/api/resources/things/", "", nil)
	var page struct{ Count int }
	json.Unmarshal([]byte(body), &page)
	return page.Count
}

// The reproduction: with the token in the switchyard_token cookie, a page
// on another site could create records with a form or a text/plain fetch
// (no CORS preflight). State-changing calls now need application/json,
// and with a cookie token an allowed Origin; header tokens are not
// ambient, so they need no Origin.
func TestCrossSiteWritesWithTheCookieAreRefused(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		resourcesConfig(c)
		c.Auth.JWT.HMACSecret = testSecret
		c.WebSocket.AllowedOrigins = []string{"https://app.example.com"}
	}, Options{})
	cookie := "switchyard_token=" + token(t, "alice", time.Hour, nil)
	things := base + "/api/resources/things/"
	for _, tc := range []struct {
		name, method, body string
		hdr                map[string]string
		status             int
	}{
		{"text/plain from another site", "POST", `{"name": "csrf"}`, map[string]string{"Cookie": cookie, "Content-Type": "text/plain", "Origin": "https://evil.example"}, 403},
		{"text/plain without Origin", "POST", `{"name": "csrf"}`, map[string]string{"Cookie": cookie, "Content-Type": "text/plain"}, 415},
		{"a form", "POST", `name=csrf`, map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"multipart", "POST", "--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ncsrf\r\n--b--\r\n", map[string]string{"Cookie": cookie, "Content-Type": "multipart/form-data; boundary=b"}, 415},
		{"no content type", "POST", `{"name": "csrf"}`, map[string]string{"Cookie": cookie}, 415},
		{"JSON from another site", "POST", `{"name": "csrf"}`, map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Origin": "https://evil.example"}, 403},
		{"JSON, fetch metadata says cross-site", "POST", `{"name": "csrf"}`, map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403},
		{"JSON from a lookalike origin", "POST", `{"name": "csrf"}`, map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Origin": "https://app.example.com.evil.example"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countThings(t, base)
			st, body := restRequest(t, tc.method, things, tc.body, tc.hdr)
			if st != tc.status {
				t.Fatalf("%d %s, want %d", st, body, tc.status)
			}
			if after := countThings(t, base); after != before {
				t.Fatalf("a record was created (%d -> %d)", before, after)
			}
		})
	}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"same origin", map[string]string{"Cookie": cookie, "Content-Type": "application/json", "Origin": base}},
		{"an allowed origin", map[string]string{"Cookie": cookie, "Content-Type": "application/json; charset=utf-8", "Origin": "https://app.example.com"}},
		{"a non-browser client with the cookie", map[string]string{"Cookie": cookie, "Content-Type": "application/json"}},
		{"a bearer token from anywhere", map[string]string{"Authorization": "Bearer " + token(t, "alice", time.Hour, nil), "Content-Type": "application/json", "Origin": "https://evil.example"}},
	} {
		if st, body := restRequest(t, "POST", things, `{"name": "ok"}`, tc.hdr); st != 201 {
			t.Fatalf("%s: %d %s", tc.name, st, body)
		}
	}
	// Updates and deletes follow the same rules.
	st, body := restRequest(t, "POST", things, `{"name": "keep"}`, map[string]string{"Cookie": cookie, "Content-Type": "application/json"})
	if st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	var rec map[string]any
	json.Unmarshal([]byte(body), &rec)
	item := fmt.Sprintf("%s%v/", things, rec["pk"])
	if st, body = restRequest(t, "PATCH", item, `name=changed`, map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}); st != 415 {
		t.Fatalf("form PATCH: %d %s", st, body)
	}
	if st, body = restRequest(t, "DELETE", item, "", map[string]string{"Cookie": cookie, "Origin": "https://evil.example"}); st != 403 {
		t.Fatalf("cross-site DELETE: %d %s", st, body)
	}
	if st, body = restRequest(t, "GET", item, "", nil); st != 200 || !strings.Contains(body, `"keep"`) {
		t.Fatalf("the record changed: %d %s", st, body)
	}
	if st, body = restRequest(t, "DELETE", item, "", map[string]string{"Cookie": cookie, "Origin": base}); st != 204 {
		t.Fatalf("same-origin DELETE: %d %s", st, body)
	}
}

// The reproduction: next and previous reflected the Host header
// (Host: evil.example gave http://evil.example/…). They are relative, or
// under public_url.
func TestPageLinksIgnoreTheHostHeader(t *testing.T) {
	for _, tc := range []struct {
		publicURL, want string
	}{
		{"", "/api/resources/things/?page=2"},
		{"https://api.example.com/sy/", "https://api.example.com/sy/api/resources/things/?page=2"},
	} {
		base, _ := start(t, func(c *config.Config) {
			resourcesConfig(c)
			c.PublicURL = tc.publicURL
		}, Options{})
		for range 3 {
			restWrite(t, "POST", base+"/api/resources/things/", `{"name": "n"}`)
		}
		st, body := restRequest(t, "GET", base+"/api/resources/things/", "", map[string]string{"Host": "evil.example"})
		var page struct{ Next, Previous *string }
		json.Unmarshal([]byte(body), &page)
		if st != 200 || page.Next == nil || *page.Next != tc.want || strings.Contains(body, "evil") {
			t.Fatalf("public_url %q: %d %s, want next %s", tc.publicURL, st, body, tc.want)
		}
		if tc.publicURL == "" {
			// A relative link resolves against the URL the client used.
			if st, body := restRequest(t, "GET", base+*page.Next, "", nil); st != 200 || !strings.Contains(body, `"results"`) {
				t.Fatalf("following next: %d %s", st, body)
			}
		}
		st, body = restRequest(t, "GET", base+"/api/resources/things/?page=2", "", map[string]string{"Host": "evil.example"})
		json.Unmarshal([]byte(body), &page)
		if st != 200 || page.Previous == nil || !strings.HasSuffix(*page.Previous, "/api/resources/things/?page=1") || strings.Contains(body, "evil") {
			t.Fatalf("previous: %d %s", st, body)
		}
	}
}

// The reproduction: ?search= with 50,001 characters was a 500 from
// SQLite ("LIKE or GLOB pattern too complex"). It is a 400 naming the
// parameter and the key, on REST and on /live.
func TestSearchLengthIsCapped(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		resourcesConfig(c)
		c.Limits.MaxSearchLength = 100
	}, Options{})
	restWrite(t, "POST", base+"/api/resources/things/", `{"name": "needle"}`)
	st, body := restRequest(t, "GET", base+"/api/resources/things/?search="+strings.Repeat("a", 50001), "", nil)
	if st != 400 || !strings.Contains(body, `"search"`) || !strings.Contains(body, "limits.max_search_length") {
		t.Fatalf("REST: %d %s", st, body)
	}
	if st, body = restRequest(t, "GET", base+"/api/resources/things/?search="+strings.Repeat("é", 100), "", nil); st != 200 {
		t.Fatalf("100 characters: %d %s", st, body)
	}
	c := newLiveClient(t, base)
	p := c.request("things", "list", map[string]any{"data": map[string]any{"search": strings.Repeat("a", 50001)}})
	if p["response_status"] != 400.0 || !strings.Contains(fmt.Sprint(p["errors"]), "limits.max_search_length") {
		t.Fatalf("/live: %v", p)
	}
	p = c.request("things", "list", map[string]any{"data": map[string]any{"search": "needle"}})
	if p["response_status"] != 200.0 {
		t.Fatalf("/live within the cap: %v", p)
	}
}

// recordingHandler keeps the records logged at Error, and passes
// everything to the test log.
type recordingHandler struct {
	slog.Handler
	mu     *sync.Mutex
	errors *[]string
}

func (h recordingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		h.mu.Lock()
		*h.errors = append(*h.errors, b.String())
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recordingHandler{h.Handler.WithAttrs(as), h.mu, h.errors}
}

func (h recordingHandler) WithGroup(g string) slog.Handler {
	return recordingHandler{h.Handler.WithGroup(g), h.mu, h.errors}
}

// Every 500 is logged at error, with its cause, on every surface: before,
// REST answered 500 without a word in the log.
func TestEvery500IsLogged(t *testing.T) {
	var mu sync.Mutex
	var errs []string
	logger := slog.New(recordingHandler{slog.NewTextHandler(logWriter{t}, nil), &mu, &errs})
	logged := func(want ...string) error {
		mu.Lock()
		defer mu.Unlock()
	next:
		for _, w := range want {
			for _, e := range errs {
				if strings.Contains(e, w) {
					continue next
				}
			}
			return fmt.Errorf("no error logged with %q in %q", w, errs)
		}
		return nil
	}
	fail := errors.New("the disk is on fire")
	base, _ := start(t, resourcesConfig, Options{Logger: logger, ResourceHooks: map[string]resource.Hooks{
		"things": {Validate: func(context.Context, resource.Write) error { return fail }},
	}})
	st, body := restRequest(t, "POST", base+"/api/resources/things/", `{"name": "x"}`, map[string]string{"Content-Type": "application/json"})
	if st != 500 || strings.Contains(body, "fire") {
		t.Fatalf("REST: %d %s", st, body)
	}
	eventually(t, 2*time.Second, func() error {
		return logged("REST request failed method=POST path=/api/resources/things/ err=the disk is on fire", "HTTP request failed with 500")
	})
	c := newLiveClient(t, base)
	if p := c.request("things", "create", map[string]any{"data": map[string]any{"name": "x"}}); p["response_status"] != 500.0 || strings.Contains(fmt.Sprint(p), "fire") {
		t.Fatalf("/live: %v", p)
	}
	eventually(t, 2*time.Second, func() error {
		return logged("live: resource request failed resource=things action=create err=the disk is on fire")
	})
}
