package clients_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/tcpproxy"
	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/server"
	"github.com/switchyardhq/switchyard/signal"
)

// The secrets of the test configuration; the Node tests mint their tokens
// with jwtSecret and call the server API with apiKey.
const (
	jwtSecret = "client-tests-hmac-secret-0123456789"
	apiKey    = "client-tests-api-key-0123456789"
)

// testConfig is the server the client tests run against: resources in
// both pk flavours and with owners, channel namespaces with and without
// history, tokens and an API key.
const testConfig = `
auth:
  anonymous: true
  jwt: {hmac_secret: "` + jwtSecret + `"}
api_keys: ["` + apiKey + `"]
limits: {messages_per_second: 100000}
resources:
  things:
    pk_field: pk
    fields:
      name: {type: string, required: true, max_length: 64}
      counter: {type: int, default: 0}
    permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}
  things_with_id:
    pk_field: id
    fields:
      name: {type: string, required: true, max_length: 64}
      counter: {type: int, default: 0}
    permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}
  todos:
    fields:
      title: {type: string, required: true, max_length: 200}
      done: {type: bool, default: false}
      rank: {type: int, default: 0}
      list: {type: string, default: "inbox"}
      owner: {type: string}
    permissions: {read: owner:owner, create: authenticated, update: owner:owner, delete: owner:owner}
channels:
  namespaces:
    chat:
      presence: true
      history_size: 1000
      history_ttl: 1h
      recover: true
      permissions: {subscribe: anyone, publish: anyone, presence: anyone, history: anyone}
    news:
      permissions: {subscribe: anyone, publish: anyone}
    closed:
      permissions: {subscribe: none, publish: none}
`

// nodeDir returns clients/js, built (make test runs npm ci and the
// build). In CI a missing build fails the test; locally it skips, visibly.
func nodeDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("js")
	if err != nil {
		t.Fatal(err)
	}
	for _, need := range []string{"node_modules/esbuild", "node_modules/ws", "dist/index.js", "dist/index.cjs", "dist/switchyard.js"} {
		if _, err := os.Stat(filepath.Join(dir, need)); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("clients/js/%s is missing: make test runs npm ci and the build there (%v)", need, err)
			}
			t.Skipf("clients/js is not built (%s missing): cd clients/js && npm ci && npm run build", need)
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is required for the client tests")
	}
	return dir
}

// logWriter sends the server's log to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// harness runs a real server behind a TCP proxy that the tests can cut
// (down/up) and a server they can restart on the same data directory; a
// small HTTP control API lets the Node tests do both.
type harness struct {
	t       *testing.T
	yaml    string
	mutate  func(*config.Config)
	dataDir string
	proxy   *tcpproxy.Proxy

	mu     sync.Mutex
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, yaml string, mutate func(*config.Config)) *harness {
	t.Helper()
	h := &harness{t: t, yaml: yaml, mutate: mutate, dataDir: t.TempDir()}
	p, err := tcpproxy.New("")
	if err != nil {
		t.Fatal(err)
	}
	h.proxy = p
	h.start()
	t.Cleanup(func() {
		h.stop()
		h.proxy.Close()
	})
	return h
}

// start runs a server on a new port and points the proxy at it.
func (h *harness) start() {
	h.t.Helper()
	cfg, err := config.Parse("client-tests.yaml", []byte(h.yaml), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = h.dataDir
	cfg.WebSocket.AllowedOrigins = []string{"*"}
	if h.mutate != nil {
		h.mutate(&cfg)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(logWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Signals: testSignals})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	h.mu.Lock()
	h.srv, h.cancel, h.done = srv, cancel, done
	h.mu.Unlock()
	h.proxy.SetBackend(srv.Addr().String())
}

// stop shuts the server down gracefully.
func (h *harness) stop() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil {
		h.t.Errorf("server stopped with %v", err)
	}
}

// direct returns the current server's own address (not through the proxy).
func (h *harness) direct() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return "http://" + h.srv.Addr().String()
}

// base returns the address clients use: the proxy's.
func (h *harness) base() string { return "http://" + h.proxy.Addr() }

// control serves the Node tests' requests: POST /down (cut every client
// connection and refuse new ones), /up, /restart (stop the server and start
// another on the same data directory, still down: the answer is its direct
// address, for writes the clients must catch up with), /direct (that
// address, without a restart).
func (h *harness) control() string {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		h.proxy.SetDown(true)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /up", func(w http.ResponseWriter, r *http.Request) {
		h.proxy.SetDown(false)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /direct", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"direct": h.direct()})
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		h.proxy.SetDown(true)
		h.stop()
		h.start()
		json.NewEncoder(w).Encode(map[string]string{"direct": h.direct()})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	h.t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// env returns the environment of the Node tests.
func (h *harness) env() []string {
	return append(os.Environ(),
		"SWITCHYARD_URL=ws://"+h.proxy.Addr()+"/live",
		"SWITCHYARD_HTTP="+h.base(),
		"SWITCHYARD_CONTROL="+h.control(),
		"SWITCHYARD_JWT_SECRET="+jwtSecret,
		"SWITCHYARD_API_KEY="+apiKey,
	)
}

// runNode runs node with args in dir and returns its output; it fails the
// test when node fails.
func runNode(t *testing.T, dir string, env []string, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	cmd.Env = env
	ownGroup(cmd)
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("node %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// summary checks node --test's closing lines: at least minPass passing
// and none failing.
func summary(t *testing.T, out string, minPass int) {
	t.Helper()
	var pass, fail, skipped int = -1, -1, 0
	for _, line := range strings.Split(out, "\n") {
		fmt.Sscanf(strings.TrimSpace(line), "ℹ pass %d", &pass)
		fmt.Sscanf(strings.TrimSpace(line), "ℹ fail %d", &fail)
		fmt.Sscanf(strings.TrimSpace(line), "ℹ skipped %d", &skipped)
	}
	if fail != 0 || pass < minPass || skipped != 0 {
		t.Fatalf("node tests: %d passing (want at least %d), %d failing, %d skipped (none may skip)", pass, minPass, fail, skipped)
	}
}

// TestNode runs the node:test suites of clients/js (test/*.test.mjs)
// against a real server: resources, live queries, channels, signals and
// the connection (reconnects, restarts, tokens, timeouts).
func TestNode(t *testing.T) {
	dir := nodeDir(t)
	h := newHarness(t, testConfig, nil)
	// SWITCHYARD_CLIENT_TESTS=connection runs test/connection.test.mjs only.
	pattern, minPass := "*", 26 // every suite's every test
	if only := os.Getenv("SWITCHYARD_CLIENT_TESTS"); only != "" {
		pattern, minPass = only, 1
	}
	files, err := filepath.Glob(filepath.Join(dir, "test", pattern+".test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in clients/js/test: %v", err)
	}
	args := append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)
	out := runNode(t, dir, h.env(), 4*time.Minute, args...)
	summary(t, out, minPass)
}

// testSignals are the signals the client tests call: client_test.echo
// answers its kwargs (sync), client_test.ping_me is queued and its handler
// triggers client_test.pong back to the calling window.
func testSignals(s *signal.Service) error {
	err := s.Register("client_test.echo", func(ctx context.Context, c *signal.Call) (any, error) {
		return map[string]json.RawMessage{"echo": c.Kwargs}, nil
	}, signal.Options{Allowed: config.AccessAnyone, Sync: true, ExtraArgs: config.SignalExtraAccept})
	if err != nil {
		return err
	}
	return s.Register("client_test.ping_me", func(ctx context.Context, c *signal.Call) (any, error) {
		_, err := c.Reply(ctx, "client_test.pong", c.Kwargs)
		return nil, err
	}, signal.Options{Allowed: config.AccessAnyone, ExtraArgs: config.SignalExtraAccept})
}

// TestNodeOnCluster runs the resource and live query suites, and the
// restart test of channels that only a shared broker can pass
// (test/restart.cluster.mjs), against a server on the Redis broker and
// the PostgreSQL store: across a restart the live query catches up from
// PostgreSQL's change log, and the channel subscription recovers from
// Redis's history with nothing lost and no gap.
func TestNodeOnCluster(t *testing.T) {
	dir := nodeDir(t)
	redisURL, prefix := testenv.RedisURL(t), testenv.RedisPrefix(t)
	pg := testenv.PostgresSchema(t)
	h := newHarness(t, testConfig, func(c *config.Config) {
		c.Broker.Driver, c.Broker.URL, c.Broker.Prefix = config.BrokerRedis, config.Secret(redisURL), prefix
		c.Store.Driver, c.Store.URL = config.StorePostgres, config.Secret(pg)
	})
	var files []string
	for _, f := range []string{"resources.test.mjs", "livequery.test.mjs", "restart.cluster.mjs"} {
		files = append(files, filepath.Join(dir, "test", f))
	}
	args := append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)
	out := runNode(t, dir, h.env(), 4*time.Minute, args...)
	summary(t, out, 3)
}
