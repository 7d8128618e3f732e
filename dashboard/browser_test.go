package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/switchyardhq/switchyard/client"
	"github.com/switchyardhq/switchyard/queue"
)

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

// screenshotDir is where the screenshots go: docs/images/dashboard when
// SWITCHYARD_DASHBOARD_SCREENSHOTS=1 (make dashboard-screenshots), so
// that docs/dashboard.md shows the pages as they are; a temporary
// directory otherwise.
func screenshotDir(t *testing.T) string {
	if os.Getenv("SWITCHYARD_DASHBOARD_SCREENSHOTS") != "" {
		dir, err := filepath.Abs("../docs/images/dashboard")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// dcrfSubscriber runs the unmodified npm dcrf-client (tests/dcrf): it
// subscribes to a record and prints each event it receives.
const dcrfSubscriber = `'use strict';
const WebSocket = require('ws');
const dcrf = require('dcrf-client').default;
setTimeout(() => { console.log('FAIL timed out'); process.exit(1); }, 60000).unref();
(async () => {
  const client = dcrf.createClient(process.env.SWITCHYARD_URL, { websocket: { WebSocket }, pkField: 'id' });
  const connected = new Promise((resolve) => client.transport.on('connect', resolve));
  client.initialize();
  await connected;
  await client.subscribe('todos', Number(process.env.PK), (data, action) => console.log('EVENT ' + action + ' ' + JSON.stringify(data)));
  console.log('SUBSCRIBED');
})().catch((e) => { console.log('FAIL ' + JSON.stringify(e)); process.exit(1); });
`

// startDCRF starts the dcrf-client subscriber on a record and returns
// its output lines.
func startDCRF(t *testing.T, url string, pk int) <-chan string {
	t.Helper()
	dir, err := filepath.Abs("../tests/dcrf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "dcrf-client")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tests/dcrf/node_modules is missing: make test runs npm ci there (%v)", err)
		}
		t.Skip("tests/dcrf is not installed: cd tests/dcrf && npm ci")
	}
	script := filepath.Join(t.TempDir(), "subscriber.js")
	if err := os.WriteFile(script, []byte(dcrfSubscriber), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"), "SWITCHYARD_URL="+url, fmt.Sprintf("PK=%d", pk))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = newLogWriter(t)
	if err := cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cancel(); cmd.Wait() })
	return lines
}

// waitLine waits for an output line starting with prefix.
func waitLine(t *testing.T, lines <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the dcrf-client ended before %q", prefix)
			}
			t.Logf("dcrf-client: %s", l)
			if strings.HasPrefix(l, "FAIL") {
				t.Fatalf("dcrf-client: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("the dcrf-client printed no %q", prefix)
		}
	}
}

// must runs an action that returns a value.
func must[T any](t *testing.T, what string, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestBrowser drives the dashboard in Chromium: sign-in (a wrong password
// refused), a client appearing in the connection list, a message
// published to a channel and received by the client, a record edited
// (refused inline, then saved) and the update received by a subscribed
// dcrf-client, the table following other writers, a client disconnected,
// a CSRF-less post refused, every page usable at 1280 and 390 px with
// labelled controls, sign-out. It saves a screenshot of each page.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	register, enqueue := failingJob(t)
	e := newEnv(t, nil, register)
	shots := screenshotDir(t)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 180*time.Second)
	defer cancelTimeout()

	var mu sync.Mutex
	var console bytes.Buffer
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			// The confirm() before a disconnect or a delete: accept it
			// (from another goroutine: a listener may not call the page).
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		case *runtime.EventExceptionThrown:
			mu.Lock()
			fmt.Fprintf(&console, "exception %s\n", ev.ExceptionDetails.Text)
			if x := ev.ExceptionDetails.Exception; x != nil {
				fmt.Fprintf(&console, "  %s\n", x.Description)
			}
			mu.Unlock()
		case *runtime.EventConsoleAPICalled:
			mu.Lock()
			for _, a := range ev.Args {
				fmt.Fprintf(&console, "console.%s %s\n", ev.Type, a.Value)
			}
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if console.Len() > 0 {
			t.Errorf("browser console (the pages must run without errors):\n%s", console.String())
		}
	}()
	base := e.ts.URL + "/dashboard/"
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
	setValue := func(sel, v string) chromedp.Action[chromedp.Void] { return chromedp.SetValue(chromedp.CSS(sel), v) }
	sendKeys := func(sel, v string) chromedp.Action[chromedp.Void] { return chromedp.SendKeys(chromedp.CSS(sel), v) }
	text := func(sel string) string {
		t.Helper()
		return must(t, "text of "+sel, ctx, chromedp.Text(chromedp.CSS(sel)))
	}
	location := func() string {
		t.Helper()
		return strings.TrimPrefix(must(t, "location", ctx, chromedp.Location()), e.ts.URL)
	}
	// until waits for a JavaScript condition to give a truthy string.
	until := func(what, js string) string {
		t.Helper()
		return must(t, what, ctx, chromedp.Poll[string](js, chromedp.WithPollingTimeout(20*time.Second)))
	}
	// shot saves the whole page (top only: a long page gets its
	// viewport's worth).
	shot := func(name string, top ...bool) {
		t.Helper()
		capture := chromedp.FullScreenshot(100)
		if len(top) > 0 && top[0] {
			capture = chromedp.CaptureScreenshot()
		}
		buf := must(t, "screenshot "+name, ctx, capture)
		img, err := png.Decode(bytes.NewReader(buf))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		t.Logf("screenshot %s: %dx%d", name, img.Bounds().Dx(), img.Bounds().Dy())
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// labelled checks that every control of the page has an accessible
	// name, and that the page does not scroll sideways at its width.
	labelled := func(what string) {
		t.Helper()
		problems := must(t, "labels on "+what, ctx, chromedp.Evaluate[[]string](`(() => {
			const out = [];
			for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
				if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label")) out.push("unlabelled " + el.outerHTML.slice(0, 80));
			}
			for (const el of document.querySelectorAll("button, a[href]")) {
				if (!(el.getAttribute("aria-label") || el.textContent.trim())) out.push("nameless " + el.outerHTML.slice(0, 80));
			}
			if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push("scrolls sideways: " + document.documentElement.scrollWidth + " > " + window.innerWidth);
			return out;
		})()`))
		if len(problems) > 0 {
			t.Errorf("%s: %s", what, strings.Join(problems, "; "))
		}
	}
	do("viewport", chromedp.EmulateViewport(1280, 860))

	// Without a session, the pages send the browser to the login page.
	for _, p := range []string{"", "connections", "channels", "resources/todos", "queues", "config"} {
		do("open "+p, chromedp.Navigate(base+p), visible("#password"))
		if loc := location(); !strings.HasPrefix(loc, "/dashboard/login") {
			t.Fatalf("%s without a session: at %s", p, loc)
		}
	}
	labelled("login")
	shot("login")

	// A wrong password is refused; the right one, typed and sent with
	// Enter, signs in and goes to the page asked for.
	do("wrong password", sendKeys("#password", "not the password\r"), visible("#login-error"))
	if msg := text("#login-error"); msg != "Wrong password." || !strings.HasPrefix(location(), "/dashboard/login") {
		t.Fatalf("wrong password: %q at %s", msg, location())
	}
	do("sign in", sendKeys("#password", password+"\r"), visible("pre.config"))
	if loc := location(); loc != "/dashboard/config" {
		t.Fatalf("after sign-in: at %s, want the page asked for last", loc)
	}

	// Connections: a client connects and appears in the open list.
	do("connections", chromedp.Navigate(base+"connections"), visible("[data-count]"))
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	states := make(chan client.State, 10)
	alice, err := client.Dial(cctx, e.wsURL(), client.Options{Token: token(t, "alice"), NoReconnect: true, OnState: func(s client.State) { states <- s }})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	got := make(chan string, 10)
	if _, err := alice.Subscribe(cctx, "chat:lobby", client.ChannelHandlers{OnMessage: func(p client.Publication) { got <- string(p.Data) }}); err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`tr[data-conn=%q]`, alice.ClientID())
	do("the client appears", visible(row))
	rowText := text(row)
	for _, want := range []string{"alice", "websocket", "live", "127.0.0.1"} {
		if !strings.Contains(rowText, want) {
			t.Errorf("connection row %q lacks %q", rowText, want)
		}
	}
	labelled("connections")
	shot("connections")

	// Overview: the figures count the client.
	do("overview", chromedp.Navigate(base), visible(".figures"))
	until("connections figure", `document.querySelector('[data-field=connections] [data-value]').textContent === "1" && "1"`)
	labelled("overview")
	shot("overview")

	// Channel: publish from the form; the client receives it, the live
	// tail shows what is published next.
	const tailLive = `(document.querySelector('[data-tail-state]').textContent.startsWith("Live") && "live")`
	do("channel", chromedp.Navigate(base+"channel?name=chat:lobby"), visible("#data"))
	until("tail live", tailLive)
	// With the keyboard: the first Tab reaches "Skip to content", more
	// Tabs the Publish button, Enter sends the form.
	do("message", setValue("#data", `{"text": "from the dashboard"}`))
	do("tab", chromedp.KeyEvent("\t"))
	if got := until("focus", `document.activeElement && document.activeElement.className`); got != "skip" {
		t.Fatalf("the first Tab focuses %q, want the skip link", got)
	}
	for i := 0; ; i++ {
		if i == 40 {
			t.Fatal("Tab never reaches the Publish button")
		}
		do("tab", chromedp.KeyEvent("\t"))
		if must(t, "focused", ctx, chromedp.Evaluate[bool](`document.activeElement.matches("#data ~ button")`)) {
			break
		}
	}
	do("publish", chromedp.KeyEvent("\r"), visible(".flash"))
	select {
	case m := <-got:
		if m != `{"text":"from the dashboard"}` && m != `{"text": "from the dashboard"}` {
			t.Fatalf("the client received %s", m)
		}
	case <-cctx.Done():
		t.Fatal("the client did not receive the dashboard's message")
	}
	until("tail live again", tailLive)
	if _, err := alice.Publish(cctx, "chat:lobby", map[string]string{"text": "from alice"}); err != nil {
		t.Fatal(err)
	}
	<-got
	until("tail", `(() => { const li = document.querySelector('#tail li'); return li && li.textContent.includes("from alice") && li.textContent; })()`)
	labelled("channel")
	shot("channel")
	do("channels", chromedp.Navigate(base+"channels"), visible(`a[href^="/dashboard/channel?name=chat"][href$="lobby"]`))
	if row := text(`tbody tr:has(a[href$="lobby"])`); !strings.Contains(row, "1 client, 1 user") {
		t.Errorf("channel row %q: presence should count alice", row)
	}
	labelled("channels")
	shot("channels")

	// Resources: edit a row; a subscribed dcrf-client receives the update.
	e.call("POST", "/api/resources/todos/", map[string]any{"title": "write me", "rank": 3, "meta": map[string]int{"n": 1}})
	e.call("POST", "/api/resources/todos/", map[string]any{"title": "another", "done": true, "owner": "bob"})
	dcrf := startDCRF(t, e.wsURL(), 1)
	waitLine(t, dcrf, "SUBSCRIBED")
	do("resources", chromedp.Navigate(base+"resources"), visible(`a[href="/dashboard/resources/todos"]`))
	labelled("resources")
	shot("resources")
	do("list", chromedp.Navigate(base+"resources/todos"), visible(`tr[data-pk="1"]`))
	labelled("resource list")
	do("edit", click(`a[aria-label="Edit todos 1"]`), visible("#f-title"))
	do("too long", setValue("#f-title", "a title far longer than twenty characters"), click(`form.record button[type=submit]`), visible("#e-title"))
	msg := text("#e-title")
	invalid := must(t, "aria-invalid", ctx, chromedp.AttributeValue(chromedp.CSS("#f-title"), "aria-invalid"))
	if !strings.Contains(msg, "no more than 20 characters") || invalid.Value != "true" {
		t.Fatalf("inline error %q, aria-invalid %q", msg, invalid.Value)
	}
	labelled("record form")
	shot("resource-edit")
	do("save", setValue("#f-title", "edited in dashboard"), click(`form.record button[type=submit]`), visible(`tr[data-pk="1"]`))
	t.Logf("after save: %s at %s", e.call("GET", "/api/resources/todos/1/", nil), location())
	ev := waitLine(t, dcrf, "EVENT update")
	if !strings.Contains(ev, `"title":"edited in dashboard"`) || !strings.Contains(ev, `"rank":3`) {
		t.Fatalf("dcrf-client event: %s", ev)
	}
	// Another writer: the open table shows the new row by itself.
	e.call("POST", "/api/resources/todos/", map[string]any{"title": "from elsewhere"})
	until("live row", `(() => { const td = [...document.querySelectorAll('#records td')].find((td) => td.textContent === "from elsewhere"); return td && td.textContent; })()`)
	shot("resource-list")

	// Signals and queues: discard a failed job from its row.
	discard, keep := enqueue(e), enqueue(e)
	do("queues", chromedp.Navigate(base+"queues"), visible(fmt.Sprintf(`tr[data-job="%d"]`, keep)))
	do("discard", click(fmt.Sprintf(`button[aria-label="Discard job %d"]`, discard)), visible(".flash"))
	if msg := text(".flash"); msg != fmt.Sprintf("Job %d discarded: it is now cancelled.", discard) {
		t.Fatalf("discard: %q", msg)
	}
	if in, err := e.srv.Queue().Get(context.Background(), discard); err != nil || in.State != queue.StateCancelled {
		t.Fatalf("discarded job: %+v %v", in.State, err)
	}
	labelled("queues")
	shot("queues")
	do("config", chromedp.Navigate(base+"config"), visible("pre.config"))
	if conf := text("pre.config"); strings.Contains(conf, password) || strings.Contains(conf, apiKey) || !strings.Contains(conf, "[redacted]") {
		t.Fatalf("configuration page:\n%s", conf)
	}
	labelled("config")
	shot("config", true)

	// A post without the CSRF token is refused, even from the page.
	status := must(t, "csrf-less post", ctx, chromedp.Evaluate[int](`fetch("/dashboard/channel/publish", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "channel=chat:lobby&data=%22forged%22"}).then((r) => r.status)`, chromedp.EvalAwaitPromise))
	if status != 403 {
		t.Fatalf("a post without the CSRF token: %d", status)
	}

	// Disconnect the client from its row.
	do("connections again", chromedp.Navigate(base+"connections"), visible(row))
	do("disconnect", click(row+` button.danger`), visible(".flash"))
	if msg := text(".flash"); !strings.Contains(msg, "Disconnected "+alice.ClientID()) {
		t.Fatalf("flash %q", msg)
	}
	for s := range states {
		if s == client.Disconnected {
			break
		}
	}
	select {
	case m := <-got:
		t.Fatalf("the forged post reached the client: %s", m)
	default:
	}
	until("the disconnected client leaves the list", fmt.Sprintf(`document.querySelectorAll(%q).length === 0 && "gone"`, row))

	// 390 px wide: every page fits, its controls stay labelled.
	do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, p := range []struct{ path, wait, name string }{
		{"", ".figures", "overview-390"},
		{"connections", "[data-count]", ""},
		{"channels", ".count", ""},
		{"channel?name=chat:lobby", "#data", ""},
		{"resources/todos", `tr[data-pk="1"]`, "resource-list-390"},
		{"resources/todos/1", "#f-title", ""},
		{"queues", "#queues-h", ""},
		{"config", "pre.config", ""},
	} {
		do("390 "+p.path, chromedp.Navigate(base+p.path), visible(p.wait))
		if p.path == "" {
			// alice is gone: the dcrf-client is the one connection left.
			until("connections after the disconnect", `document.querySelector('[data-field=connections] [data-value]').textContent === "1" && document.querySelector('[data-field=users] [data-value]').textContent === "0" && "1"`)
		}
		labelled("390 px " + p.path)
		if p.name != "" {
			shot(p.name)
		}
	}
	do("desktop", chromedp.EmulateViewport(1280, 860))

	// Sign out: the pages are closed again.
	do("sign out", chromedp.Navigate(base), visible(".figures"), click(`form.logout button`), visible("#password"))
	if msg := text(".flash"); msg != "You are signed out." {
		t.Fatalf("after sign-out: %q", msg)
	}
	do("after sign-out", chromedp.Navigate(base+"resources/todos"), visible("#password"))
	if loc := location(); !strings.HasPrefix(loc, "/dashboard/login") {
		t.Fatalf("after sign-out: at %s", loc)
	}
	if body := must(t, "body", ctx, chromedp.OuterHTML(chromedp.CSS("body"))); strings.Contains(body, "edited in dashboard") {
		t.Fatal("a signed-out browser sees records")
	}
}
