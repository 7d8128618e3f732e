package clients_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

// browserPage is a page with no build step: it imports the client from the
// server's /switchyard.js and exposes each step of the test as a function.
const browserPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>switchyard client test</title></head>
<body>
<script type="module">
import { connect, SwitchyardError } from "/switchyard.js";
const params = new URLSearchParams(location.search);
const list = params.get("list");
let sy, q, messages = [], signals = [];
const until = (check, what) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("timed out: " + what)), 5000);
  const poll = () => { const v = check(); if (v) { clearTimeout(timer); resolve(v); } else setTimeout(poll, 10); };
  poll();
});
window.setup = async () => {
  sy = connect("ws://" + location.host + "/live", { token: params.get("token") });
  await new Promise((resolve) => sy.on("connected", resolve));
  q = sy.liveQuery("todos", { filter: { list }, ordering: "id" });
  await q.ready;
  const sub = sy.channel("chat:browser", { onMessage: (data) => messages.push(data) });
  await sub.ready;
  sy.onSignal("browser.ping", (kwargs) => signals.push(kwargs));
  return { user: sy.user, native: sy.options.WebSocket === undefined && typeof WebSocket === "function", rows: q.getSnapshot().length };
};
window.createAndWait = async () => {
  const todo = await sy.resource("todos").create({ title: "from the browser", list });
  const rows = await until(() => q.getSnapshot().some((r) => r.id === todo.id) && q.getSnapshot(), "the live query");
  return { created: todo.id, rows: rows.map((r) => r.title) };
};
window.waitMessage = async () => until(() => messages.length && messages, "the channel message");
window.waitSignal = async () => until(() => signals.length && signals, "the signal");
window.probeSignals = async () => {
  const err = await sy.call("browser.nope", {}).catch((e) => e);
  return { typed: err instanceof SwitchyardError, code: err.code, message: err.message };
};
</script>
</body></html>`

// chromium returns the system Chromium (the Debian package; .ci/run
// installs it), skipping locally and failing in CI when it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is missing: .ci/run installs the Debian package chromium")
	}
	t.Skip("chromium is not installed: apt-get install chromium")
	return ""
}

// TestBrowser loads /switchyard.js in Chromium from a page without a build
// step: the page creates a record and sees its live query update, receives
// a channel message, and (once the server has $signals) a signal.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	cfg, err := config.Parse("client-tests.yaml", []byte(testConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	// The page is served beside the server's own routes: same origin.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /client-test.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, browserPage)
	})
	mux.Handle("/", srv.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})

	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "browser-user", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()
	var mu sync.Mutex
	var console bytes.Buffer
	err = chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			for _, a := range ev.Args {
				fmt.Fprintf(&console, "console.%s %s %s\n", ev.Type, a.Value, a.Description)
			}
		case *runtime.EventExceptionThrown:
			fmt.Fprintf(&console, "exception %s\n", ev.ExceptionDetails.Text)
			if e := ev.ExceptionDetails.Exception; e != nil {
				fmt.Fprintf(&console, "  %s\n", e.Description)
			}
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if console.Len() > 0 {
			t.Logf("browser console:\n%s", console.String())
		}
	}()

	list := fmt.Sprintf("browser-%d", time.Now().UnixNano())
	page := ts.URL + "/client-test.html?list=" + list + "&token=" + tok
	call := func(t *testing.T, fn string, out any) {
		t.Helper()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](fn+"()", chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s in the browser: %v", fn, err)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: %v (%s)", fn, err, raw)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("typeof window.setup === 'function'")); err != nil {
		t.Fatalf("the page's module did not load: %v", err)
	}
	var setup struct {
		User   string `json:"user"`
		Native bool   `json:"native"`
		Rows   int    `json:"rows"`
	}
	call(t, "setup", &setup)
	if setup.User != "browser-user" || !setup.Native || setup.Rows != 0 {
		t.Fatalf("setup: %+v", setup)
	}

	var created struct {
		Created int      `json:"created"`
		Rows    []string `json:"rows"`
	}
	call(t, "createAndWait", &created)
	if created.Created == 0 || strings.Join(created.Rows, ",") != "from the browser" {
		t.Fatalf("live query in the browser: %+v", created)
	}

	serverAPI(t, ts.URL, "publish", map[string]any{"channel": "chat:browser", "data": map[string]string{"text": "to the browser"}})
	var messages []map[string]string
	call(t, "waitMessage", &messages)
	if len(messages) != 1 || messages[0]["text"] != "to the browser" {
		t.Fatalf("channel messages in the browser: %v", messages)
	}

	t.Run("signal", func(t *testing.T) {
		var probe struct {
			Typed   bool   `json:"typed"`
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		call(t, "probeSignals", &probe)
		if !probe.Typed || probe.Code != "not_found" {
			t.Fatalf("calling an unknown signal: %+v, want a SwitchyardError not_found", probe)
		}
		if strings.Contains(probe.Message, "unknown stream") {
			t.Skipf("this server has no $signals stream yet (issue 15): the signal half of the browser test runs once it lands (%s)", probe.Message)
		}
		serverAPI(t, ts.URL, "trigger", map[string]any{"signal": "browser.ping", "to": map[string]any{"users": []string{"browser-user"}}, "kwargs": map[string]int{"n": 1}})
		var signals []map[string]int
		call(t, "waitSignal", &signals)
		if len(signals) != 1 || signals[0]["n"] != 1 {
			t.Fatalf("signals in the browser: %v", signals)
		}
	})
}

// serverAPI calls the server API with the test key.
func serverAPI(t *testing.T, base, method string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", base+"/api/server/"+method, bytes.NewReader(b))
	req.Header.Set("Authorization", "apikey "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("server API %s: %d", method, resp.StatusCode)
	}
}
