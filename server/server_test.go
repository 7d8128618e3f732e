package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// start runs a real server on a free port until the test ends and returns
// its base URL and the function that stops it (returning Run's error).
func start(t *testing.T, mutate func(*config.Config), o Options) (string, func() error) {
	t.Helper()
	_, base, stop := startServer(t, mutate, o)
	return base, stop
}

// startServer is start that also returns the server.
func startServer(t *testing.T, mutate func(*config.Config), o Options) (*Server, string, func() error) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	if mutate != nil {
		mutate(&cfg)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return runServer(t, cfg, o)
}

// run serves cfg with o as it is (a nil Logger stays nil).
func run(t *testing.T, cfg config.Config, o Options) (string, func() error) {
	t.Helper()
	_, base, stop := runServer(t, cfg, o)
	return base, stop
}

// runServer is run that also returns the server.
func runServer(t *testing.T, cfg config.Config, o Options) (*Server, string, func() error) {
	t.Helper()
	srv, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-errc
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	base := "http://" + srv.Addr().String()
	eventually(t, 5*time.Second, func() error {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
	return srv, base, stop
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
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

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func dialLive(t *testing.T, base string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// frame is a decoded /live frame.
type frame struct {
	Stream  string `json:"stream"`
	Payload struct {
		Action         string          `json:"action"`
		ClientID       string          `json:"client_id"`
		Errors         []string        `json:"errors"`
		ResponseStatus int             `json:"response_status"`
		RequestID      json.RawMessage `json:"request_id"`
	} `json:"payload"`
}

func readFrame(t *testing.T, c *websocket.Conn) frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f frame
	if err := c.ReadJSON(&f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHealthReadyMetrics(t *testing.T) {
	failing := errors.New("database unreachable")
	fail := false
	base, _ := start(t, nil, Options{Checks: []Check{{Name: "extra", Func: func(context.Context) error {
		if fail {
			return failing
		}
		return nil
	}}}})

	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("readyz %d %s", code, body)
	}
	fail = true
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "database unreachable") {
		t.Fatalf("readyz with a failing check: %d %s", code, body)
	}
	fail = false

	c := dialLive(t, base)
	readFrame(t, c)
	c.WriteMessage(websocket.TextMessage, []byte(`{"stream":"nope","payload":{"action":"x","request_id":1}}`))
	readFrame(t, c)

	// The sent counter moves after the write returns, which can be just
	// after the client read the frame: wait for it.
	eventually(t, 5*time.Second, func() error {
		code, body := get(t, base+"/metrics")
		if code != 200 {
			return fmt.Errorf("metrics %d", code)
		}
		for _, want := range []string{
			"switchyard_connections 1",
			"switchyard_connections_accepted_total 1",
			"switchyard_messages_received_total 1",
			"switchyard_messages_sent_total 2",
			"switchyard_bytes_received_total",
			"switchyard_bytes_sent_total",
			`switchyard_errors_total{kind="protocol"} 0`,
			"go_goroutines",
			"process_resident_memory_bytes",
			`switchyard_build_info{commit=`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		return nil
	})
	if code, body := get(t, base+"/no/such/path"); code != 404 || !strings.Contains(body, `"code":"not_found"`) {
		t.Fatalf("unknown path: %d %s", code, body)
	}
}

func TestLiveBadInputKeepsTheConnection(t *testing.T) {
	base, _ := start(t, func(c *config.Config) { c.Limits.MaxMessageSize = 1024 }, Options{})
	if code, body := get(t, base+"/live"); code != 400 || !strings.Contains(body, "websocket_required") {
		t.Fatalf("plain GET /live: %d %s", code, body)
	}
	c := dialLive(t, base)
	hello := readFrame(t, c)
	if hello.Stream != "$session" || hello.Payload.Action != "connected" || len(hello.Payload.ClientID) < 16 {
		t.Fatalf("connected frame %+v", hello)
	}
	cases := []struct {
		frame  string
		stream string
		status int
		rid    string
	}{
		{`not json`, "$session", 400, "null"},
		{`[1,2]`, "$session", 400, "null"},
		{`{"stream":"todos","payload":"x"}`, "todos", 400, "null"},
		{`{"payload":{"action":"list","request_id":"r1"}}`, "$session", 400, `"r1"`},
		{`{"stream":"nope","payload":{"action":"list","request_id":7}}`, "nope", 404, "7"},
		{`{"stream":"$session","payload":{"action":"dance","request_id":"r2"}}`, "$session", 405, `"r2"`},
	}
	for _, tc := range cases {
		c.WriteMessage(websocket.TextMessage, []byte(tc.frame))
		f := readFrame(t, c)
		if f.Stream != tc.stream || f.Payload.ResponseStatus != tc.status || string(f.Payload.RequestID) != tc.rid || len(f.Payload.Errors) != 1 {
			t.Errorf("%s: got %+v", tc.frame, f)
		}
	}
	// Over the message limit: 1009, and the server lives on.
	c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 2048)))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1009 {
		t.Fatalf("want close 1009, got %v", err)
	}
	c2 := dialLive(t, base)
	readFrame(t, c2)
}

func TestGracefulShutdownClosesWith1001(t *testing.T) {
	base, stop := start(t, nil, Options{})
	c := dialLive(t, base)
	readFrame(t, c)
	closed := make(chan int, 1)
	go func() {
		for {
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				closed <- ce.Code
				return
			}
			if err != nil {
				closed <- -1
				return
			}
		}
	}()
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if code := <-closed; code != 1001 {
		t.Fatalf("close code %d, want 1001", code)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestPanicInHTTPHandlerIsContained(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	h := srv.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("handler bug")
		}
		fmt.Fprint(w, "fine")
	}))
	ts := httptest.NewServer(h)
	defer ts.Close()
	if code, body := get(t, ts.URL+"/boom"); code != 500 || !strings.Contains(body, `"code":"internal"`) {
		t.Fatalf("panic: %d %s", code, body)
	}
	if code, body := get(t, ts.URL+"/ok"); code != 200 || body != "fine" {
		t.Fatalf("after panic: %d %s", code, body)
	}
}

func TestNewRefusesDriversNotBuilt(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Broker.Driver = "nats"
	cfg.Broker.URL = "nats://127.0.0.1:4222"
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "broker.driver: nats is not available in this build") {
		t.Fatalf("err = %v", err)
	}
}
